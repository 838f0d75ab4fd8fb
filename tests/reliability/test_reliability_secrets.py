"""Secrets and TLS: no key, token, signing secret or Authorization value ever shows, and TLS
verification cannot be turned off.

With ``TRACKING_DEBUG=1`` and DEBUG logging on the root logger (so every logger, httpx and
httpcore included, is captured), the four built-in providers deliver, retry, and get 4xx answers
whose bodies echo their keys; then bad configurations, the reprs of every object an application
sees, exception messages, and the ``tracking providers`` / ``tracking send`` commands are checked
for every secret. The TLS half inspects each provider's effective SSL context, greps the sources
for a way to disable verification, and shows a self-signed certificate being refused.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import tracking_core as tc
from tracking_core.fakes import VendorFake
from tracking_core.hookspecs import PROJECT_NAME
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply
from tracking_core.registry import runtime
from tracking_core.settings import EngineSettings

from ..harness import (
    BUILTIN_PROVIDERS,
    Served,
    credentials,
    environment,
    served_fakes,
    subprocess_environment,
)
from ..tcp_server import TcpServer

if TYPE_CHECKING:
    from tests.reliability.conftest import ReliabilityReport

REPO = Path(__file__).resolve().parents[2]
PROVIDERS = BUILTIN_PROVIDERS
USER = "user-secrets-0001"

#: The credentials the fakes expect, by variable.
CREDENTIALS = credentials(PROVIDERS)
#: Our own secrets, beside those: Mixpanel's project secret (events then go to /import with
#: HTTP Basic auth) and a token carried in the webhook URL's query.
MIXPANEL_SECRET = "mp-api-secret-6b1d9e20"
MIXPANEL_BASIC = base64.b64encode(f"{MIXPANEL_SECRET}:".encode()).decode()
URL_TOKEN = "url-token-3f9c1a77"
WEBHOOK_TOKEN = CREDENTIALS["TRACKING_WEBHOOK_AUTH"].partition(" ")[2]
WEBHOOK_KEY = CREDENTIALS["TRACKING_WEBHOOK_SECRET"].removeprefix("whsec_")

SECRETS: tuple[str, ...] = (
    *CREDENTIALS.values(),
    WEBHOOK_TOKEN,
    WEBHOOK_KEY,
    MIXPANEL_SECRET,
    MIXPANEL_BASIC,
    URL_TOKEN,
)


def leaks(text: str, secrets: Sequence[str] = SECRETS) -> list[str]:
    """The secrets found in `text`."""
    return [secret for secret in secrets if secret in text]


@pytest.fixture(scope="module")
def destinations() -> Iterator[dict[str, Served]]:
    """The four fakes, Mixpanel's expecting the project secret on /import; served once."""
    with served_fakes(PROVIDERS) as found:
        found["mixpanel"].fake.api_secret = MIXPANEL_SECRET  # type: ignore[attr-defined]
        yield found


#: Debug on, quick retries.
DEBUG_SETTINGS = {"TRACKING_DISABLED": "0", "TRACKING_DEBUG": "1", "TRACKING_RETRY_BACKOFF": "0.01"}


def all_secrets_environment(destinations: Mapping[str, Served]) -> dict[str, str | None]:
    """Every secret set, debug on, the four providers pointed at their fakes."""
    url = destinations["webhook"].server.url + f"/hooks/analytics?token={URL_TOKEN}"
    return environment(
        destinations.values(),
        {**DEBUG_SETTINGS, "TRACKING_RETRY_BACKOFF_MAX": "0.02"},
        MIXPANEL_API_SECRET=MIXPANEL_SECRET,
        TRACKING_WEBHOOK_URL=url,
    )


def capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG on the root logger and on the loggers that may have their own level."""
    caplog.set_level(logging.DEBUG)
    for name in ("tracking_core", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured line, formatted with tracebacks, plus each raw message and its args."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
    return "\n".join(parts)


def counted_ends(stats: tc.ProviderStats) -> int:
    return stats.delivered + sum(stats.dropped.values())


#: What each destination echoes back: its own provider's secrets (a provider can only mask
#: the secrets it holds).
OWN_SECRETS: dict[str, tuple[str, ...]] = {
    "posthog": (CREDENTIALS["POSTHOG_API_KEY"],),
    "mixpanel": (CREDENTIALS["MIXPANEL_TOKEN"], MIXPANEL_SECRET, MIXPANEL_BASIC),
    "amplitude": (CREDENTIALS["AMPLITUDE_API_KEY"],),
    "webhook": (
        CREDENTIALS["TRACKING_WEBHOOK_AUTH"],
        CREDENTIALS["TRACKING_WEBHOOK_SECRET"],
        WEBHOOK_KEY,
        f"token={URL_TOKEN}",  # the URL's query as a whole
    ),
}


def echoing_retries(destinations: Mapping[str, Served]) -> None:
    """Script each fake to answer the next two requests with its vendor's 503, echoing its
    secrets."""
    for name, destination in destinations.items():
        echo = " ".join(OWN_SECRETS[name])
        reply = destination.fake.error(503, f"overloaded ({echo})", retry_after="0")
        destination.fake.fail_next(reply, times=2)


def echoing_rejections(destinations: Mapping[str, Served]) -> None:
    """Script each fake to refuse the next request with its vendor's 401, echoing its
    secrets."""
    for name, destination in destinations.items():
        echo = " ".join(OWN_SECRETS[name])
        destination.fake.fail_next(destination.fake.error(401, f"invalid credentials {echo}"))


def settings_declarations() -> list[Any]:
    """The settings class each built-in provider declares, reached through its entry point."""
    plugins = importlib.metadata.entry_points(group=PROJECT_NAME)
    return [plugin.load().settings for plugin in plugins if plugin.name in PROVIDERS]


def objects_an_application_sees() -> list[Any]:
    """Providers, their settings, the engine's settings, counters and plugin reports."""
    engine = runtime().engine
    seen: list[Any] = [
        tc.tracking_stats(),
        tc.discover_tracking_providers(),
        engine.settings,
        EngineSettings.from_environ(),
    ]
    for lane in engine.lanes:
        seen += [lane, lane.provider, getattr(lane.provider, "settings", None)]
    for settings_class in settings_declarations():
        seen.append(settings_class.from_environ(os.environ))
    return seen


Configure = Callable[..., None]


@pytest.fixture
def enable_all(
    destinations: dict[str, Served], tracking_env: Configure, caplog: pytest.LogCaptureFixture
) -> Configure:
    """``enable_all(**changes)``: every log line captured (`capture_everything`), then
    `all_secrets_environment` with `changes` (None removes a variable), as an application
    starts."""
    capture_everything(caplog)

    def apply(**changes: str | None) -> None:
        tracking_env(**{**all_secrets_environment(destinations), **changes})

    return apply


def test_no_secret_in_logs_reprs_or_stats_through_delivery_retries_and_rejections(
    destinations: dict[str, Served],
    enable_all: Configure,
    caplog: pytest.LogCaptureFixture,
    reliability_report: ReliabilityReport,
) -> None:
    enable_all()
    assert sorted(tc.list_tracking_providers()) == sorted(PROVIDERS)

    # Delivery (events and identifies, every route).
    for i in range(5):
        tc.track("Secret Check", {"i": i}, user_id=USER)
    tc.identify(USER, {"plan": "pro"})
    assert tc.flush_tracking(15)
    # Retries, then a 4xx rejection, every answer echoing the provider's secrets.
    echoing_retries(destinations)
    tc.track("Retried", {"n": 1}, user_id=USER)
    assert tc.flush_tracking(15)
    echoing_rejections(destinations)
    tc.track("Rejected", {"n": 2}, user_id=USER)
    assert tc.flush_tracking(15)

    stats = tc.tracking_stats()
    for name in PROVIDERS:
        s = stats[name]
        assert s.delivered == 7, (name, s)
        assert s.retried >= 1, (name, s)
        assert s.dropped.get(tc.DropReason.REJECTED) == 1, (name, s)
        assert s.accepted == counted_ends(s) == 8, (name, s)
        assert s.last_error is not None and leaks(s.last_error) == [], (name, s.last_error)

    text = all_log_text(caplog)
    # Not vacuous: the debug lines, the HTTP library's own DEBUG lines and the rejections were
    # logged, and the echoed secrets were masked rather than left out.
    assert "sent" in text and "attempt" in text
    assert any(r.name.startswith(("httpx", "httpcore")) for r in caplog.records)
    rejected = [r.getMessage() for r in caplog.records if "(rejected)" in r.getMessage()]
    assert len(rejected) == 4, rejected
    assert all("***" in line for line in rejected), rejected
    assert leaks(text) == []

    for thing in objects_an_application_sees():
        assert leaks(repr(thing)) == [], type(thing)
        assert leaks(str(thing)) == [], type(thing)

    lost = sum(s.accepted - counted_ends(s) - s.queued for s in stats.values())
    assert lost == 0
    reliability_report.add(
        "secrets: debug logging through delivery, retries and 4xx",
        "4 providers, 8 calls each: 6 delivered at once, 1 after two 503s, 1 refused by a "
        "4xx; every failed answer echoes the provider's secrets",
        "no key, token, signing secret or Authorization value in any log line (httpx and "
        "httpcore included), repr or counter; echoed secrets masked as ***",
        lost,
    )


#: A secret echoed alone by a destination: (provider, its answer, the secret, the events then
#: (retried, rejected)).
ECHOES: dict[str, tuple[str, Callable[[VendorFake], Reply], str, tuple[int, int]]] = {
    "a-key-in-a-response-header": (
        "posthog",
        lambda fake: Reply(
            503, "busy", {"Retry-After": "0", "X-Echo-Api-Key": CREDENTIALS["POSTHOG_API_KEY"]}
        ),
        CREDENTIALS["POSTHOG_API_KEY"],
        (1, 0),
    ),
    "a-webhook-url-token-alone": (
        "webhook",
        lambda fake: fake.error(401, f"unknown token {URL_TOKEN}"),
        URL_TOKEN,
        (0, 1),
    ),
}


@pytest.mark.parametrize("echo", list(ECHOES))
def test_a_secret_echoed_alone_is_masked(
    destinations: dict[str, Served],
    enable_all: Configure,
    caplog: pytest.LogCaptureFixture,
    echo: str,
) -> None:
    provider, answer, secret, outcome = ECHOES[echo]
    enable_all()
    assert provider in tc.list_tracking_providers()
    fake = destinations[provider].fake
    fake.fail_next(answer(fake))
    tc.track("Echo", user_id=USER)
    assert tc.flush_tracking(15)
    stats = tc.tracking_stats()[provider]
    assert (stats.retried, stats.dropped.get(tc.DropReason.REJECTED, 0)) == outcome, stats
    assert leaks(f"{stats.last_error}\n{all_log_text(caplog)}", (secret,)) == []


#: Credentials in the webhook URL: the password holds a ``"`` and a ``\\``, so that a receiver
#: echoing it in JSON shows it escaped; the Basic header made from them shows as base64.
URL_USER = "hook-user-c0ffee09"
URL_PASSWORD = 'pa"ss\\word-c0ffee09'
URL_BASIC = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()
#: Every form in which those are sent, or echoed back by a receiver.
URL_CREDENTIAL_FORMS: tuple[str, ...] = (
    URL_USER,
    URL_PASSWORD,
    json.dumps(URL_PASSWORD)[1:-1],
    urllib.parse.quote(URL_PASSWORD, safe=""),
    URL_BASIC,
)


def credentials_echo(status: int) -> Callable[[ReceivedRequest], Reply]:
    """A responder answering `status` with the Authorization it got echoed in a header and in
    its JSON body, beside the password in plain (JSON-escaped) and URL-encoded forms."""

    def respond(request: ReceivedRequest) -> Reply:
        authorization = request.headers.get("authorization", "")
        body = {
            "authorization": authorization,
            "password": URL_PASSWORD,
            "encoded": urllib.parse.quote(URL_PASSWORD, safe=""),
        }
        return Reply(status, body, {"X-Echo-Authorization": authorization, "Retry-After": "0"})

    return respond


def webhook_with_url_credentials(url: str) -> dict[str, str | None]:
    """The webhook alone, its URL carrying `URL_USER` and `URL_PASSWORD`, debug on."""
    password = urllib.parse.quote(URL_PASSWORD, safe="")
    credentials = f"http://{URL_USER}:{password}@"
    return environment(
        (),
        DEBUG_SETTINGS,
        TRACKING_PROVIDERS="webhook",
        TRACKING_WEBHOOK_URL=url.replace("http://", credentials) + "/hooks/in",
    )


def test_every_form_of_url_credentials_is_masked_when_echoed(
    tracking_env: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #10 item 12: the Basic header made from URL credentials, and a password echoed
    JSON-escaped or URL-encoded, never show (logs at DEBUG, last_error, reprs, the CLI)."""
    capture_everything(caplog)
    busy, refuse = credentials_echo(503), credentials_echo(401)
    # The first request gets a 503 (retried), every later one a 401 (dropped).
    with LoopbackReceiver(lambda r: refuse(r) if receiver.requests else busy(r)) as receiver:
        env = webhook_with_url_credentials(receiver.url)
        tracking_env(**env)
        assert tc.list_tracking_providers() == ["webhook"]
        tc.track("Echo", user_id=USER)
        assert tc.flush_tracking(15)
        assert receiver.requests[0].headers["authorization"] == f"Basic {URL_BASIC}"
        cli = _run_cli(["send", "CLI Echo", "--user-id", USER, "--timeout", "10"], env)
    stats = tc.tracking_stats()["webhook"]
    assert stats.dropped.get(tc.DropReason.REJECTED) == 1 and stats.retried == 1, stats
    assert "***" in (stats.last_error or "")  # the echo was there, masked
    text = all_log_text(caplog)
    assert any("X-Echo-Authorization" in r.getMessage() for r in caplog.records)  # httpcore
    assert leaks(text, URL_CREDENTIAL_FORMS) == []
    assert leaks(stats.last_error or "", URL_CREDENTIAL_FORMS) == []
    for thing in objects_an_application_sees():
        assert leaks(repr(thing), URL_CREDENTIAL_FORMS) == [], type(thing)
    assert cli.returncode == 1 and "dropped" in cli.stdout, cli.stdout + cli.stderr
    assert leaks(cli.stdout + cli.stderr, URL_CREDENTIAL_FORMS) == []


BAD_SECRETS: dict[str, tuple[dict[str, str | None], str, str]] = {
    # id: (environment changes, variable named, secret that must not show)
    "posthog-personal-key": (
        {"POSTHOG_API_KEY": "phx_personal_secret_c0ffee01"},
        "POSTHOG_API_KEY",
        "personal_secret_c0ffee01",
    ),
    "posthog-key-too-long": (
        {"POSTHOG_API_KEY": "phc_" + "long-secret-c0ffee02" * 4},
        "POSTHOG_API_KEY",
        "long-secret-c0ffee02",
    ),
    "posthog-key-not-ascii": (
        {"POSTHOG_API_KEY": "phc_sécret-c0ffee03"},
        "POSTHOG_API_KEY",
        "sécret-c0ffee03",
    ),
    "webhook-secret-not-base64": (
        {"TRACKING_WEBHOOK_SECRET": "whsec_!!bad-secret-c0ffee04"},
        "TRACKING_WEBHOOK_SECRET",
        "bad-secret-c0ffee04",
    ),
    "webhook-auth-two-lines": (
        {"TRACKING_WEBHOOK_AUTH": "Bearer tok-c0ffee05\nX-Injected: 1"},
        "TRACKING_WEBHOOK_AUTH",
        "tok-c0ffee05",
    ),
    "webhook-auth-and-url-credentials": (
        {"TRACKING_WEBHOOK_URL": "https://hookuser:hook-pass-c0ffee06@example.com/in"},
        "TRACKING_WEBHOOK_AUTH",
        "hook-pass-c0ffee06",
    ),
    "mixpanel-partial-service-account": (
        {
            "MIXPANEL_SERVICE_ACCOUNT_USERNAME": "sa-user-c0ffee07",
            "MIXPANEL_SERVICE_ACCOUNT_SECRET": "sa-secret-c0ffee07",
        },
        "MIXPANEL_PROJECT_ID",
        "sa-secret-c0ffee07",
    ),
}


@pytest.mark.parametrize("changes, variable, secret", BAD_SECRETS.values(), ids=list(BAD_SECRETS))
def test_a_malformed_secret_is_named_never_shown(
    enable_all: Configure,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, str | None],
    variable: str,
    secret: str,
) -> None:
    enable_all(**changes)
    names = tc.list_tracking_providers()
    assert len(names) == 3  # only the misconfigured provider is off
    reports = tc.discover_tracking_providers()
    errors = [report.error for report in reports if report.error]
    assert len(errors) == 1 and variable in errors[0]

    # The exception an application gets when it reads the settings itself.
    messages: list[str] = []
    for settings_class in settings_declarations():
        try:
            settings_class.from_environ(os.environ)
        except tc.SettingsError as exc:
            messages += [str(exc), repr(exc), repr(exc.args), str(exc.variable), exc.problem]
    assert any(variable in message for message in messages)

    text = "\n".join([all_log_text(caplog), repr(reports), *messages])
    assert variable in text
    assert leaks(text, (*SECRETS, secret)) == []


def _tracking_command() -> list[str]:
    script = shutil.which("tracking", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tracking_core"]


def _run_cli(
    args: Sequence[str], env: Mapping[str, str | None]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_tracking_command(), *args],
        capture_output=True,
        text=True,
        env=subprocess_environment(env),
        cwd=REPO,
        timeout=60,
    )


def test_the_cli_never_prints_a_secret(destinations: dict[str, Served]) -> None:
    env = all_secrets_environment(destinations)

    listing = _run_cli(["providers"], env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count("enabled") >= 4
    assert "set (hidden)" in listing.stdout

    as_json = _run_cli(["providers", "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    plugins = {p["entry_point"]: p for p in json.loads(as_json.stdout)["plugins"]}
    assert all(plugins[name]["enabled"] for name in PROVIDERS)

    sent = _run_cli(["send", "CLI Check", "--prop", "plan=pro", "--user-id", USER], env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.count("delivered") == 4
    assert "sent 1 items" in sent.stderr  # TRACKING_DEBUG's lines, on stderr

    posthog = destinations["posthog"].fake
    posthog.fail_next(posthog.error(401, f"API key is not valid: {CREDENTIALS['POSTHOG_API_KEY']}"))
    refused = _run_cli(["send", "CLI Refused", "--user-id", USER, "--timeout", "10"], env)
    assert refused.returncode == 1
    posthog_line = next(line for line in refused.stdout.splitlines() if line.startswith("posthog"))
    assert "dropped" in posthog_line and "***" in posthog_line

    for result in (listing, as_json, sent, refused):
        assert leaks(result.stdout + result.stderr) == [], result.args


def test_the_cli_does_not_print_credentials_in_a_host_url(
    destinations: dict[str, Served],
) -> None:
    env = all_secrets_environment(destinations)
    password = "proxy-pass-c0ffee08"
    env["MIXPANEL_HOST"] = destinations["mixpanel"].server.url.replace(
        "http://", f"http://proxyuser:{password}@"
    )
    listing = _run_cli(["providers"], env)
    assert listing.returncode == 0
    assert "MIXPANEL_HOST" in listing.stdout
    assert password not in listing.stdout + listing.stderr


# ---------------------------------------------------------------------------------------------
# TLS verification cannot be turned off
# ---------------------------------------------------------------------------------------------

#: Variables a user might try in order to turn verification off; none may have any effect.
INSECURE_SWITCHES = {
    "TRACKING_INSECURE": "1",
    "TRACKING_TLS_VERIFY": "0",
    "TRACKING_SSL_VERIFY": "false",
    "TRACKING_VERIFY_SSL": "0",
    "POSTHOG_INSECURE": "1",
    "HTTPX_VERIFY": "0",
    "PYTHONHTTPSVERIFY": "0",
    "CURL_CA_BUNDLE": "",
    "REQUESTS_CA_BUNDLE": "",
}


def _contexts(transport: Any) -> list[ssl.SSLContext]:
    """The SSL contexts a provider's transport verifies with (one for every pool it makes,
    direct or through a proxy)."""
    from tracking_core.transport import DefaultTransport

    assert isinstance(transport, DefaultTransport), type(transport)
    return [transport.ssl_context]


def test_every_builtin_provider_client_verifies_certificates(
    destinations: dict[str, Served], tracking_env: Callable[..., None]
) -> None:
    env = {**all_secrets_environment(destinations), **INSECURE_SWITCHES}
    tracking_env(**env)
    assert sorted(tc.list_tracking_providers()) == sorted(PROVIDERS)
    tc.track("TLS Check", user_id=USER)  # the first request creates each provider's client
    assert tc.flush_tracking(15)
    lanes = {lane.name: lane for lane in runtime().engine.lanes}
    assert sorted(lanes) == sorted(PROVIDERS)
    for name, lane in lanes.items():
        assert tc.tracking_stats()[name].delivered >= 1
        client = lane.delivery.transport  # the lane's Sender: the transport it sends through
        assert client is not None, f"{name} made no HTTP transport"
        contexts = _contexts(client)
        assert contexts, name
        for context in contexts:
            assert isinstance(context, ssl.SSLContext)
            assert context.verify_mode == ssl.CERT_REQUIRED, name
            assert context.check_hostname is True, name
        assert getattr(client, "follow_redirects", False) is False, name


_SOURCES = [REPO / "tracking_core", *sorted((REPO / "providers").glob("*/tracking_*"))]
_DISABLING = re.compile(
    r"verify\s*=\s*(False|0|None|os\.|env)|CERT_NONE|check_hostname\s*=\s*False"
    r"|_create_unverified_context|ssl\._create_default_https_context"
)
_SWITCH_NAME = re.compile(r"""["'][A-Z0-9_]*(VERIFY|INSECURE)[A-Z0-9_]*["']""")


def test_no_setting_in_the_code_can_disable_tls_verification() -> None:
    files = [path for root in _SOURCES for path in sorted(root.rglob("*.py"))]
    # The HTTP layer: every module of the tracking_core.http and tracking_core.transport
    # packages (the sender, the wire types, the default transport, proxies...).
    http_layer = [
        path
        for package in ("http", "transport")
        for path in sorted((REPO / "tracking_core" / package).glob("*.py"))
    ]
    assert len(http_layer) >= 6 and set(http_layer) <= set(files)
    assert len(files) >= 20
    offences = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _DISABLING.search(line) or _SWITCH_NAME.search(line):
                offences.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offences == []
    http_source = "\n".join(path.read_text(encoding="utf-8") for path in http_layer)
    assert "ssl.create_default_context(cafile=" in http_source


class TlsServer(TcpServer):
    """A loopback HTTPS server with a self-signed certificate that answers ``200`` to anything;
    it counts the TLS handshakes that succeeded and failed."""

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        super().__init__()
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certfile, keyfile)
        self.handshakes = 0
        self.refused = 0
        self.requests: list[bytes] = []

    def serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                conn = self._context.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError):
                with self._lock:
                    self.refused += 1
                return
            with self._lock:
                self.handshakes += 1
            with conn, contextlib.suppress(OSError):
                self.requests.append(self._read_request(conn))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    @staticmethod
    def _read_request(conn: ssl.SSLSocket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def wait_for(self, predicate: Callable[[TlsServer], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[tuple[TlsServer, Path]]:
    """A `TlsServer` with a fresh self-signed certificate for 127.0.0.1, and that certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with TlsServer(cert, key) as server:
        yield server, cert


def _posthog_over_tls(server: TlsServer, tracking_env: Callable[..., None], **extra: str) -> None:
    env = environment(
        (),
        {},
        POSTHOG_API_KEY=CREDENTIALS["POSTHOG_API_KEY"],
        POSTHOG_HOST=f"https://127.0.0.1:{server.port}",
        TRACKING_PROVIDERS="posthog",
        TRACKING_MAX_ATTEMPTS="2",
        TRACKING_RETRY_BACKOFF="0.01",
        **INSECURE_SWITCHES,
    )
    env.update({name: None for name in os.environ if name.startswith("SSL_CERT_")})
    env.update(extra)
    tracking_env(**env)
    assert tc.list_tracking_providers() == ["posthog"]
    tc.track("TLS Check", user_id=USER)
    assert tc.flush_tracking(15)


def test_a_self_signed_certificate_is_refused(
    self_signed: tuple[TlsServer, Path], tracking_env: Callable[..., None]
) -> None:
    server, _cert = self_signed
    _posthog_over_tls(server, tracking_env)
    stats = tc.tracking_stats()["posthog"]
    assert stats.delivered == 0
    # Not a transient failure: dropped at once (not retried), saying why.
    assert dict(stats.dropped) == {tc.DropReason.REJECTED: 1}
    error = stats.last_error or ""
    assert "TLS certificate verification failed for 127.0.0.1" in error, error
    assert "self-signed certificate" in error, error
    assert server.wait_for(lambda s: s.refused >= 1)
    assert server.refused == 1 and server.handshakes == 0
    assert server.requests == []  # not a byte of the batch (or its key) left the process


def test_a_trusted_certificate_is_accepted(
    self_signed: tuple[TlsServer, Path], tracking_env: Callable[..., None]
) -> None:
    """The control: the same server is fine once its certificate is trusted (SSL_CERT_FILE,
    the supported way to trust a private CA), so the refusal above is verification at work."""
    server, cert = self_signed
    _posthog_over_tls(server, tracking_env, SSL_CERT_FILE=str(cert))
    stats = tc.tracking_stats()["posthog"]
    assert stats.delivered == 1, stats
    assert server.handshakes >= 1 and server.refused == 0
    assert server.requests and server.requests[0].startswith(b"POST /batch/ HTTP/1.1")


def test_the_secrets_checked_are_distinctive() -> None:
    """They cannot occur by chance in ordinary output, so a hit is a leak."""
    assert all(len(secret) >= 12 for secret in SECRETS)
    assert len(set(SECRETS)) == len(SECRETS)
    echoed = {secret for values in OWN_SECRETS.values() for secret in values}
    assert set(SECRETS) <= echoed | {WEBHOOK_TOKEN, URL_TOKEN}
