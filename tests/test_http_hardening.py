"""Hardening of the HTTP sending side (issue #10, items 1-3), against real servers on 127.0.0.1.

- An answer's size is bounded: a huge body or a gzip bomb is read up to `MAX_ANSWER_BYTES`
  decoded bytes, never decompressed past it, and the process's memory stays flat (measured in a
  subprocess); the status of a cut answer still counts.
- Every attempt has one deadline (``TRACKING_HTTP_TIMEOUT``), however slowly a server dribbles
  its headers or its body.
- ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` are honoured, through a real forward
  proxy (`tests.forward_proxy`); TLS verification failures, name resolution failures and refused
  connections say so, and a certificate failure is not retried.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme

import tracking_core as tc
from tests.forward_proxy import ForwardProxy
from tests.tcp_server import TcpServer
from tests.test_http_engine import ENGINE_SETTINGS
from tracking_core.http import default_outcome, join_json
from tracking_core.http.sender import Sender
from tracking_core.http.wire import HttpProvider, HttpRequest, HttpResponse, Outcome, WireItem
from tracking_core.receivers import LoopbackReceiver, ReceivedRequest, Reply, _Handler, _Server
from tracking_core.registry import runtime
from tracking_core.testing import configure_tracking, reset_tracking

REPO = Path(__file__).resolve().parents[1]

#: The variables a proxy or certificate test sets; every test starts without any of them.
NETWORK_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUEST_METHOD",
)

PROXY_USER = "proxy-user"
PROXY_PASSWORD = "proxy-pw-c0ffee11"


class Probe(HttpProvider):
    """A minimal batching provider: ``{"batch": [...]}`` to ``<url>/in``; it keeps every answer
    it was given, to check what the sender made of it."""

    name = "probe"

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[HttpResponse] = []

    def encode(self, item: tc.TrackingEvent | tc.TrackingIdentify) -> WireItem:
        return WireItem({"id": item.event_id})

    def build_request(self, route: str, items: Sequence[bytes], batch_id: str) -> HttpRequest:
        return HttpRequest(f"{self.url}/in", b'{"batch":' + join_json(items) + b"}")

    def read_response(self, route: str, response: HttpResponse) -> Outcome:
        self.answers.append(response)
        return default_outcome(response)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``engine(**variables)``: fast retries, no proxy or certificate variables unless given,
    then tracking reset to read them."""

    def configure(**variables: str) -> None:
        settings = {**ENGINE_SETTINGS, "TRACKING_CIRCUIT_THRESHOLD": "100", **variables}
        configure_tracking(
            monkeypatch, {**dict.fromkeys(NETWORK_VARIABLES), **settings}, discover=False
        )

    yield configure
    tc.shutdown_tracking(2.0)
    monkeypatch.undo()
    reset_tracking()


def sender_of(name: str) -> Sender:
    """The sender the engine made for the provider called `name`."""
    (sender,) = [lane.delivery for lane in runtime().engine.lanes if lane.name == name]
    assert isinstance(sender, Sender)
    return sender


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` until true (a server thread may count a moment after the client)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def send_one(url: str, timeout: float = 15.0) -> tuple[Probe, tc.ProviderStats, float]:
    """Register a `Probe` for `url`, track one event, flush; the probe, its stats and the time
    the flush took."""
    probe = Probe(url)
    tc.register_tracking_provider(probe)
    started = time.monotonic()
    tc.track("e")
    assert tc.flush_tracking(timeout)
    return probe, tc.tracking_stats()["probe"], time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# A raw HTTP server: answers written byte by byte, as a test scripts them
# ---------------------------------------------------------------------------------------------

Answer = Callable[[socket.socket, int], bool]


class RawServer(TcpServer):
    """A threaded TCP server on 127.0.0.1 that reads each HTTP request (head and
    Content-Length body) and lets `answer(connection, request_number)` write the answer; the
    connection stays open for the next request when it returns True.

    `cut_short` counts answers the client stopped reading (it closed the connection while the
    server was still writing).
    """

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.requests = 0
        self.cut_short = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(30)
        with conn, conn.makefile("rb") as reader:
            while not self.stopping.is_set():
                try:
                    line = reader.readline()
                    length = 0
                    while line and (header := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = header.decode("latin-1").partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    reader.read(length)
                except OSError:  # the client closed the connection (after a cut answer)
                    return
                if not line:
                    return
                with self._lock:
                    self.requests += 1
                    number = self.requests
                try:
                    if not self.answer(conn, number):
                        return
                except OSError:
                    with self._lock:
                        self.cut_short += 1
                    return


def stream_body(conn: socket.socket, head: bytes, chunks: Iterator[bytes]) -> bool:
    """Send `head` then every chunk (keeps the connection open when all were sent)."""
    conn.sendall(head)
    for chunk in chunks:
        conn.sendall(chunk)
    return True


def ok_answer(conn: socket.socket, number: int) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


HUGE = 100 * 1024 * 1024  # 100 MiB: big enough to show, small enough for the old code's test run


def huge_identity(conn: socket.socket, number: int) -> bool:
    if number == 1:
        return ok_answer(conn, number)
    block = b"x" * 65536
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n".encode()
    return stream_body(conn, head, (block for _ in range(HUGE // len(block))))


_BOMB: list[bytes] = []


def gzip_bomb() -> bytes:
    """About 100 KB of gzip that decodes to `HUGE` bytes of JSON-ish text."""
    if not _BOMB:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b" " * (1024 * 1024)
        parts = [compressor.compress(b'{"ok":1,"pad":"')]
        parts += [compressor.compress(block) for _ in range(HUGE // len(block))]
        parts.append(compressor.compress(b'"}') + compressor.flush())
        _BOMB.append(b"".join(parts))
    return _BOMB[0]


def gzip_bomb_answer(conn: socket.socket, number: int) -> bool:
    if number == 1:
        return ok_answer(conn, number)
    bomb = gzip_bomb()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(bomb)}\r\n\r\n"
    ).encode()
    conn.sendall(head + bomb)
    return True


# ---------------------------------------------------------------------------------------------
# Item 1: an answer's size is bounded
# ---------------------------------------------------------------------------------------------


def test_a_huge_answer_is_read_up_to_the_cap_and_still_delivers(
    engine: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    from tracking_core.transport import MAX_ANSWER_BYTES

    engine(TRACKING_HTTP_TIMEOUT="30")
    caplog.set_level(logging.WARNING, logger="tracking_core")
    with RawServer(huge_identity) as server:
        probe, _, _ = send_one(server.url)  # the first answer is a small one
        probe.answers.clear()
        tc.track("e")
        started = time.monotonic()
        assert tc.flush_tracking(60)
        took = time.monotonic() - started
        stats = tc.tracking_stats()["probe"]
        assert stats.delivered == 2 and stats.dropped == {}  # a 200 is a 200, however long
        assert stats.truncated_answers == 1  # counted as well as logged
        (answer,) = probe.answers
        assert answer.status == 200 and answer.truncated is True
        assert len(answer.body) == MAX_ANSWER_BYTES
        assert took < 10  # reading 100 MiB is not what took the time
        # The rest was not read: the connection was closed, not kept for the next request.
        assert wait_until(lambda: server.cut_short == 1)
        tc.track("e")
        assert tc.flush_tracking(10)
        assert server.connections == 2  # a fresh connection after the cut answer
    warned = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert len(warned) == 1 and "probe" in warned[0] and str(MAX_ANSWER_BYTES) in warned[0]


def test_a_gzip_bomb_is_never_decompressed_past_the_cap(engine: Callable[..., None]) -> None:
    from tracking_core.transport import MAX_ANSWER_BYTES

    engine(TRACKING_HTTP_TIMEOUT="30")
    with RawServer(gzip_bomb_answer) as server:
        probe, _, _ = send_one(server.url)
        probe.answers.clear()
        tc.track("e")
        assert tc.flush_tracking(60)
        assert tc.tracking_stats()["probe"].truncated_answers == 1
    (answer,) = probe.answers
    assert answer.truncated is True
    assert len(answer.body) == MAX_ANSWER_BYTES
    assert answer.body.startswith(b'{"ok":1,"pad":"   ')  # decoded, only its start


@pytest.mark.parametrize(
    "encoding, encode",
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 says
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
        ("identity", bytes),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "identity"],
)
def test_a_compressed_answer_under_the_cap_is_decoded_whole(
    engine: Callable[..., None], encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    engine()
    payload = json.dumps({"code": 200, "pad": "y" * 5000}).encode()

    def answer(conn: socket.socket, number: int) -> bool:
        data = encode(payload)
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        return True

    with RawServer(answer) as server:
        probe, stats, _ = send_one(server.url)
    (answer_seen,) = probe.answers
    assert answer_seen.body == payload and answer_seen.truncated is False
    assert stats.delivered == 1


PEAK_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import tracking_core as tc
from tracking_core.http import HttpProvider, HttpRequest, WireItem, join_json

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

class P(HttpProvider):
    name = "p"
    def encode(self, item):
        return WireItem({{"id": item.event_id}})
    def build_request(self, route, items, batch_id):
        return HttpRequest({url!r} + "/in", b'{{"batch":' + join_json(items) + b"}}")

tc.register_tracking_provider(P())
tc.track("warm-up")  # imports the HTTP stack, opens the connection: a small answer
assert tc.flush_tracking(30)
time.sleep(0.2)
before = status("VmHWM")
tc.track("e")  # this one gets the huge answer
ok = tc.flush_tracking(120)
stats = tc.tracking_stats()["p"]
print(json.dumps({{"ok": ok, "growth": status("VmHWM") - before, "delivered": stats.delivered}}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
@pytest.mark.parametrize("answer", [huge_identity, gzip_bomb_answer], ids=["100MiB", "gzip-bomb"])
def test_memory_stays_flat_whatever_the_answer(answer: Answer) -> None:
    """Peak memory (VmHWM) of a real process whose provider gets a 100 MiB answer, or 100 KB of
    gzip that would decode to 100 MiB: it must not grow by anything like the answer's size."""
    with RawServer(answer) as server:
        env = {k: v for k, v in os.environ.items() if k not in NETWORK_VARIABLES}
        env.update(TRACKING_HTTP_TIMEOUT="60", TRACKING_FLUSH_INTERVAL="60")
        result = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT.format(repo=str(REPO), url=server.url)],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["delivered"] == 2
    assert data["growth"] < 24 * 1024 * 1024, data  # the answer was 100 MiB (decoded)


# ---------------------------------------------------------------------------------------------
# Item 2: one deadline per attempt
# ---------------------------------------------------------------------------------------------


def dribble(data: bytes, every: float) -> Answer:
    """An answer written one byte every `every` seconds."""

    def answer(conn: socket.socket, number: int) -> bool:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            time.sleep(every)
        return True

    return answer


SLOW_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def quick_head_then_dribbled_body(conn: socket.socket, number: int) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n")
    return dribble(b"z" * 60, 0.5)(conn, number)


@pytest.mark.parametrize(
    "answer",
    [dribble(SLOW_HEAD, 0.5), quick_head_then_dribbled_body],
    ids=["dribbled-headers", "dribbled-body"],
)
def test_a_dribbling_server_cannot_hold_an_attempt_past_its_deadline(
    engine: Callable[..., None], answer: Answer
) -> None:
    engine(TRACKING_HTTP_TIMEOUT="1", TRACKING_MAX_ATTEMPTS="1")
    with RawServer(answer) as server:
        _, stats, took = send_one(server.url, timeout=40)
        server.stopping.set()
    assert took < 5, took  # one attempt, one deadline of 1 s (each byte came within 1 s)
    assert stats.delivered == 0 and stats.dropped == {"retries_exhausted": 1}
    assert stats.last_error is not None
    assert "deadline" in stats.last_error and "1s" in stats.last_error, stats.last_error
    assert "127.0.0.1" in stats.last_error


def test_the_deadline_does_not_cut_a_normal_slow_answer(engine: Callable[..., None]) -> None:
    """The control: an answer that takes 0.5 s in all is well within a 2 s deadline."""
    engine(TRACKING_HTTP_TIMEOUT="2", TRACKING_MAX_ATTEMPTS="1")
    with LoopbackReceiver(lambda request: Reply(200, "ok", delay=0.5)) as receiver:
        _, stats, _ = send_one(receiver.url)
    assert stats.delivered == 1


# ---------------------------------------------------------------------------------------------
# Item 3: TLS and connection failures say what they are
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return path


class _TlsServer(_Server):
    context: ssl.SSLContext

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        receiver = self.receiver
        assert isinstance(receiver, HttpsReceiver)
        request.settimeout(5)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            receiver.refused += 1
            return
        receiver.handshakes += 1
        super().finish_request(request, client_address)


class HttpsReceiver(LoopbackReceiver):
    """A `LoopbackReceiver` speaking HTTPS with a certificate for 127.0.0.1 issued by a trustme
    CA; counts the handshakes that succeeded and that the client refused."""

    def __init__(
        self, authority: trustme.CA, responder: Callable[[ReceivedRequest], Reply] | None = None
    ) -> None:
        super().__init__(responder)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self.handshakes = 0
        self.refused = 0

    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://")

    def make_server(self, address: tuple[str, int]) -> _Server:
        server = _TlsServer(address, _Handler)
        server.context = self._context
        return server


@pytest.fixture
def https_receiver(authority: trustme.CA) -> Iterator[HttpsReceiver]:
    with HttpsReceiver(authority) as receiver:
        yield receiver


def test_an_untrusted_certificate_says_so_and_is_not_retried(
    engine: Callable[..., None],
    https_receiver: HttpsReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine(TRACKING_MAX_ATTEMPTS="6", TRACKING_MAX_RETRY_TIME="60")
    caplog.set_level(logging.WARNING, logger="tracking_core")
    _, stats, _ = send_one(https_receiver.url)
    assert stats.delivered == 0
    assert stats.dropped == {"rejected": 1}  # dropped at once, not retried for minutes
    assert stats.failed == 0 and stats.retried == 0
    assert wait_until(lambda: https_receiver.refused == 1)
    assert https_receiver.handshakes == 0
    error = stats.last_error or ""
    assert "TLS certificate verification failed" in error, error
    assert "127.0.0.1" in error and "unable to get local issuer certificate" in error, error
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("SSL_CERT_FILE" in line and "probe" in line for line in errors), errors
    # A later batch tries again (the certificate may have been fixed meanwhile).
    tc.track("later")
    assert tc.flush_tracking(10)
    assert wait_until(lambda: https_receiver.refused == 2)
    assert tc.tracking_stats()["probe"].dropped == {"rejected": 2}


def test_ssl_cert_file_makes_a_private_ca_trusted(
    engine: Callable[..., None], https_receiver: HttpsReceiver, ca_file: Path
) -> None:
    engine(SSL_CERT_FILE=str(ca_file))
    _, stats, _ = send_one(https_receiver.url)
    assert stats.delivered == 1 and https_receiver.handshakes == 1
    assert https_receiver.requests[0].path == "/in"


def test_a_name_that_does_not_resolve_says_so(engine: Callable[..., None]) -> None:
    engine(TRACKING_MAX_ATTEMPTS="1")
    _, stats, _ = send_one("http://nonexistent.invalid:8080")
    assert stats.dropped == {"retries_exhausted": 1}
    error = stats.last_error or ""
    assert "name resolution failed" in error and "nonexistent.invalid" in error, error


def test_a_refused_connection_says_so(engine: Callable[..., None]) -> None:
    engine(TRACKING_MAX_ATTEMPTS="1")
    with socket.create_server(("127.0.0.1", 0)) as probe_socket:
        port = probe_socket.getsockname()[1]
    _, stats, _ = send_one(f"http://127.0.0.1:{port}")
    assert stats.dropped == {"retries_exhausted": 1}
    error = stats.last_error or ""
    assert "connection refused" in error and f"127.0.0.1:{port}" in error, error


# ---------------------------------------------------------------------------------------------
# Item 3: proxies from the environment, through a real forward proxy
# ---------------------------------------------------------------------------------------------


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join([caplog.text, *(f"{r.getMessage()} {r.args!r}" for r in caplog.records)])


def test_https_goes_through_https_proxy_with_connect(
    engine: Callable[..., None], https_receiver: HttpsReceiver, ca_file: Path
) -> None:
    with ForwardProxy() as proxy:
        engine(HTTPS_PROXY=proxy.url(), SSL_CERT_FILE=str(ca_file))
        _, stats, _ = send_one(https_receiver.url)
    assert stats.delivered == 1, stats
    port = https_receiver.url.rpartition(":")[2]
    assert [(r.method, r.target) for r in proxy.seen] == [("CONNECT", f"127.0.0.1:{port}")]
    assert https_receiver.handshakes == 1  # TLS end to end, through the tunnel


def test_https_goes_through_an_https_proxy_tls_in_tls(
    engine: Callable[..., None],
    authority: trustme.CA,
    https_receiver: HttpsReceiver,
    ca_file: Path,
) -> None:
    """An ``https://`` proxy: TLS to the proxy, and the destination's TLS inside the tunnel."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with ForwardProxy(tls=context) as proxy:
        engine(HTTPS_PROXY=proxy.url(), SSL_CERT_FILE=str(ca_file))
        _, stats, _ = send_one(https_receiver.url)
    assert stats.delivered == 1, stats
    # One tunnel, and TLS end to end inside it; on a loaded machine the first attempt may time
    # out inside the two handshakes and be retried through a second tunnel, never around it.
    methods = [r.method for r in proxy.seen]
    assert methods and set(methods) == {"CONNECT"}, methods
    assert 1 <= https_receiver.handshakes <= len(methods)


def test_http_goes_through_http_proxy_in_absolute_form_with_credentials(
    engine: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        LoopbackReceiver() as receiver,
        ForwardProxy(require_auth=(PROXY_USER, PROXY_PASSWORD)) as proxy,
    ):
        engine(
            TRACKING_DEBUG="1",
            http_proxy=proxy.url(f"{PROXY_USER}:{PROXY_PASSWORD}"),
            HTTPS_PROXY="http://127.0.0.1:9",  # not for http:// targets
        )
        probe, stats, _ = send_one(receiver.url)
        tc.track("second")  # the keep-alive connection to the proxy is reused
        assert tc.flush_tracking(10)
    assert tc.tracking_stats()["probe"].delivered == 2, stats
    assert [(r.method, r.target) for r in proxy.seen] == [("POST", f"{receiver.url}/in")] * 2
    token = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    assert proxy.seen[0].headers["proxy-authorization"] == f"Basic {token}"
    assert len(receiver.requests) == 2 and "proxy-authorization" not in receiver.requests[0].headers
    text = all_log_text(caplog)
    assert "sent 1 items" in text
    transport = sender_of("probe").transport
    for shown in (text, repr(probe), repr(transport), str(tc.tracking_stats())):
        assert PROXY_PASSWORD not in shown and token not in shown


def test_all_proxy_serves_both_schemes(engine: Callable[..., None]) -> None:
    with LoopbackReceiver() as receiver, ForwardProxy() as proxy:
        engine(ALL_PROXY=f"127.0.0.1:{proxy.port}")  # no scheme: http:// is meant
        _, stats, _ = send_one(receiver.url)
    assert stats.delivered == 1
    assert [r.method for r in proxy.seen] == ["POST"]


@pytest.mark.parametrize(
    "no_proxy",
    ["127.0.0.1", "example.com, 127.0.0.1", "127.0.0.0/8", "*", "localhost,127.0.0.1:{port}"],
)
def test_no_proxy_bypasses_the_proxy(engine: Callable[..., None], no_proxy: str) -> None:
    with LoopbackReceiver() as receiver, ForwardProxy() as proxy:
        port = receiver.url.rpartition(":")[2]
        engine(HTTP_PROXY=proxy.url(), NO_PROXY=no_proxy.format(port=port))
        _, stats, _ = send_one(receiver.url)
    assert stats.delivered == 1
    assert proxy.seen == []


def test_no_proxy_for_another_port_does_not_bypass(engine: Callable[..., None]) -> None:
    with LoopbackReceiver() as receiver, ForwardProxy() as proxy:
        engine(HTTP_PROXY=proxy.url(), no_proxy="127.0.0.1:1,example.com")
        _, stats, _ = send_one(receiver.url)
    assert stats.delivered == 1
    assert len(proxy.seen) == 1


def test_a_proxy_that_refuses_connections_is_named_without_its_credentials(
    engine: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    engine(
        TRACKING_MAX_ATTEMPTS="2",
        TRACKING_DEBUG="1",
        HTTPS_PROXY=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}",
    )
    _, stats, _ = send_one("https://analytics.example.com")
    error = stats.last_error or ""
    assert stats.dropped == {"retries_exhausted": 1}
    assert "proxy" in error and f"127.0.0.1:{port}" in error and "refused" in error, error
    assert PROXY_PASSWORD not in error and PROXY_USER not in error
    assert PROXY_PASSWORD not in all_log_text(caplog)


def test_a_proxy_that_refuses_the_tunnel_is_named(engine: Callable[..., None]) -> None:
    with ForwardProxy(refuse_connect=403) as proxy:
        engine(TRACKING_MAX_ATTEMPTS="1", HTTPS_PROXY=proxy.url())
        _, stats, _ = send_one("https://analytics.example.com")
    error = stats.last_error or ""
    assert stats.dropped == {"retries_exhausted": 1}
    assert f"127.0.0.1:{proxy.port}" in error and "403" in error, error
    assert "analytics.example.com:443" in error


def test_a_proxy_asking_for_credentials_drops_the_batch_at_once(
    engine: Callable[..., None],
) -> None:
    with ForwardProxy(require_auth=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        engine(TRACKING_MAX_ATTEMPTS="5", HTTPS_PROXY=proxy.url(f"{PROXY_USER}:wrong-password"))
        _, stats, _ = send_one("https://analytics.example.com")
    assert stats.dropped == {"rejected": 1} and len(proxy.seen) == 1
    error = stats.last_error or ""
    assert "407" in error and f"127.0.0.1:{proxy.port}" in error, error
    assert "wrong-password" not in error


@pytest.mark.parametrize(
    "variables, named",
    [
        ({"SSL_CERT_FILE": "/nonexistent/ca.pem"}, "SSL_CERT_FILE"),
        ({"HTTPS_PROXY": "ftp://127.0.0.1:21"}, "HTTPS_PROXY"),
        ({"https_proxy": "http://proxy.example:notaport"}, "https_proxy"),
    ],
    ids=["missing-ca-file", "unsupported-proxy-scheme", "bad-proxy-url"],
)
def test_an_unusable_certificate_or_proxy_variable_is_named_and_nothing_is_sent(
    engine: Callable[..., None],
    authority: trustme.CA,
    caplog: pytest.LogCaptureFixture,
    variables: dict[str, str],
    named: str,
) -> None:
    """Nothing goes out unverified or around the configured proxy: each batch is dropped at
    once, the variable named."""
    caplog.set_level(logging.WARNING, logger="tracking_core")
    with HttpsReceiver(authority) as receiver:
        engine(TRACKING_MAX_ATTEMPTS="5", **variables)
        _, stats, _ = send_one(receiver.url)
        assert receiver.requests == [] and receiver.handshakes == 0
    assert stats.dropped == {"rejected": 1}
    assert named in (stats.last_error or ""), stats.last_error
    assert any(r.levelno == logging.ERROR and named in r.getMessage() for r in caplog.records)


def test_the_transport_is_built_from_the_environment_of_the_first_request(
    engine: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variables are read when the transport is built (the first request), not at import: a
    proxy set after ``import tracking_core`` but before the first event is used."""
    with LoopbackReceiver() as receiver, ForwardProxy() as proxy:
        engine()
        probe = Probe(receiver.url)
        tc.register_tracking_provider(probe)
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        tc.track("e")
        assert tc.flush_tracking(10)
    assert len(proxy.seen) == 1


# ---------------------------------------------------------------------------------------------
# The proxy rules themselves (httpx's: scheme, ALL_PROXY fallback, NO_PROXY forms)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, url, expected",
    [
        ({"HTTPS_PROXY": "http://p:1"}, "https://a.example/x", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1"}, "http://a.example/x", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://a.example/x", "http://p:1"),
        ({"ALL_PROXY": "p:3"}, "https://a.example", "http://p:3"),
        ({"ALL_PROXY": "http://p:3", "HTTPS_PROXY": "http://q:4"}, "https://a", "http://q:4"),
        (
            {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"},
            "https://a",
            "http://low:1",
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "https://example.com", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "https://a.example.com", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"},
            "https://badexample.com",
            "http://p:1",
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, "https://a.example.com", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"},
            "https://example.com",
            "http://p:1",
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "https://10.1.2.3", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "https://11.1.2.3", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "::1"}, "https://[::1]:8443", None),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "a.example:8443"},
            "https://a.example:8443",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "a.example:8443"},
            "https://a.example",
            "http://p:1",
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "https://a.example"}, "https://a.example", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": " * "}, "https://anything", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "A.Example"}, "https://a.example", None),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://a", None),  # httpoxy
        ({"HTTPS_PROXY": ""}, "https://a", None),
    ],
)
def test_proxy_rules(environ: dict[str, str], url: str, expected: str | None) -> None:
    from tracking_core.transport import ProxyRules

    assert ProxyRules.from_environ(environ).proxy_for(url) == expected


# ---------------------------------------------------------------------------------------------
# The transport is one object with a small interface
# ---------------------------------------------------------------------------------------------


def test_the_default_transport_keeps_verification_nodelay_and_pooling(
    engine: Callable[..., None],
) -> None:
    """TLS verification on, TCP_NODELAY set, one keep-alive connection reused, no redirect
    followed, and the transport is an httpx transport (tests may pass httpx.MockTransport)."""
    import httpx

    from tracking_core.transport import DefaultTransport

    engine()

    def answer(conn: socket.socket, number: int) -> bool:
        if number == 1:
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
            return True
        return ok_answer(conn, number)

    with RawServer(answer) as server:
        _, stats, _ = send_one(server.url)
        tc.track("again")
        assert tc.flush_tracking(10)
        assert server.connections == 1 and server.requests == 2  # kept alive; 302 not followed
    assert stats.dropped == {"rejected": 1}
    transport = sender_of("probe").transport
    assert isinstance(transport, httpx.BaseTransport)
    assert isinstance(transport, DefaultTransport)
    context = transport.ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in transport.socket_options


def test_the_attempt_goes_through_a_replaceable_transport(engine: Callable[..., None]) -> None:
    """The sender only calls the transport's handle_request: an httpx.MockTransport can stand in
    for it (the seam issue #11 builds on); bodies are read with the same cap."""
    import httpx

    from tracking_core.transport import MAX_ANSWER_BYTES

    engine()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"a" * (MAX_ANSWER_BYTES + 10))

    probe = Probe("https://mock.example")
    tc.register_tracking_provider(Sender(probe, transport=httpx.MockTransport(handler)))
    tc.track("e")
    assert tc.flush_tracking(10)
    assert len(seen) == 1 and seen[0].url == "https://mock.example/in"
    (answer,) = probe.answers
    assert answer.truncated is True and len(answer.body) == MAX_ANSWER_BYTES


def test_describe_names_the_failure_of_any_transport() -> None:
    """Failures raised by any httpx transport are described from their causes."""
    import httpx

    from tracking_core.transport import describe_failure

    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as cause:
        error = httpx.ConnectError("boom")
        error.__cause__ = cause
    failure = describe_failure(error, "h.example:443")
    assert "connection refused" in failure.message and "h.example:443" in failure.message
    assert failure.permanent is False
    try:
        raise ssl.SSLCertVerificationError(1, "certificate verify failed")
    except ssl.SSLCertVerificationError as cause:
        cause.verify_message = "self-signed certificate"
        error = httpx.ConnectError("boom")
        error.__cause__ = cause
    failure = describe_failure(error, "h.example:443")
    assert failure.permanent is True
    assert re.search("TLS certificate verification failed.*self-signed", failure.message)


def test_import_tracking_core_does_not_import_the_transport() -> None:
    """The transport (and httpx) are imported by the first request, not by
    ``import tracking_core``."""
    code = textwrap.dedent(
        """
        import sys
        import tracking_core
        assert "httpx" not in sys.modules and "tracking_core.transport" not in sys.modules
        import tracking_core.transport
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
