"""The ``tracking`` command (also ``python -m tracking_core``).

- ``tracking providers [--json]``: every installed provider package, whether this environment
  enables it, and if not, which variable would (or why it is disabled). Secrets are masked.
  Exit status 1 when a provider this environment configures is disabled (a malformed value, a
  blank required variable, a broken or invalid package), else 0.
- ``tracking send EVENT [--prop key=value ...] [--user-id ID] [--timeout SECONDS]``: sends one
  event through every enabled provider within the ``--timeout`` budget, prints each failure as
  it happens, then each provider's outcome. Exit status 0 when every provider delivered, 1 when
  any did not, 2 when none is enabled (and 2 for a bad argument, such as a timeout that is not
  a positive number). With ``--validate``, only to vendors' validation endpoints (validation.py).
- ``tracking demo``: the library's job end to end on loopback, no vendor account needed.

Installed packages add commands through the ``tracking_core.commands`` entry-point group
(`add_installed_commands`): tracking-redis adds ``tracking relay``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from . import api, validation
from ._version import __version__
from .discovery import PluginReport, allowed_plugins, unknown_allowed_names
from .engine import ProviderStats
from .settings import SettingsError, env_bool
from .settings_doc import ProviderSetting

__all__ = ["main"]


def _without_credentials(value: str) -> str:
    """A URL's user:password part masked; other values unchanged."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return value
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def _blank(value: str | None) -> bool:
    """Set to whitespace only (settings read that as unset); an empty value is just unset."""
    return value is not None and value != "" and not value.strip()


def _setting_state(setting: ProviderSetting, environ: Mapping[str, str]) -> dict[str, Any]:
    value = environ.get(setting.name)
    via_file = environ.get(f"{setting.name}_FILE") if setting.secret else None
    if value and value.strip():
        shown = "set (hidden)" if setting.secret else _without_credentials(value)
    elif via_file and via_file.strip():
        shown = f"set via {setting.name}_FILE (hidden)"
    elif _blank(value):
        shown = "blank (only whitespace), read as unset"
    else:
        shown = "not set" + (f" (default {setting.default})" if setting.default else "")
    return {
        "name": setting.name,
        "description": setting.description,
        "required": setting.required,
        "secret": setting.secret,
        "set": bool((value and value.strip()) or (via_file and via_file.strip())),
        "blank": _blank(value) and not (via_file and via_file.strip()),
        "value": shown,
    }


def _status(
    report: PluginReport, states: Sequence[Mapping[str, Any]], environ: Mapping[str, str]
) -> str:
    if not report.allowed:
        try:
            if env_bool(environ, "TRACKING_DISABLED"):
                return "disabled: TRACKING_DISABLED is set"
        except SettingsError:
            pass
        return "not loaded: not listed in TRACKING_PROVIDERS"
    if report.error:
        return f"disabled: {report.error}"
    if report.providers:
        return "enabled"
    required = [s for s in states if s["required"]]
    blank = [s["name"] for s in required if s["blank"]]
    if blank:
        verb = "is" if len(blank) == 1 else "are"
        return f"disabled: {' and '.join(blank)} {verb} blank (only whitespace), read as unset"
    given = [s["name"] for s in required if s["set"]]
    if given:
        return f"disabled: {', '.join(given)} set, but the package registered no provider"
    if required:
        return "disabled: set " + " and ".join(s["name"] for s in required) + " to enable it"
    return "disabled: its variables are not set"


def _is_problem(report: PluginReport, states: Sequence[Mapping[str, Any]]) -> bool:
    """A provider this environment configures (one of its variables is set) that is disabled.

    A package that declares no variables and fails counts too: nothing says it is not meant
    to be on."""
    if not report.allowed or report.providers:
        return False
    configured = any(s["set"] or s["blank"] for s in states)
    if report.error:
        return configured or not states
    return any(s["required"] and (s["set"] or s["blank"]) for s in states)


def _providers_data(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    reports = api.discover_tracking_providers()
    rows = []
    for report in sorted(reports, key=lambda r: r.name):
        states = [_setting_state(s, environ) for s in report.settings]
        rows.append(
            {
                "entry_point": report.name,
                "distribution": report.distribution,
                "version": report.version,
                "enabled": bool(report.providers),
                "providers": list(report.providers),
                "status": _status(report, states, environ),
                "error": report.error,
                "configured": any(s["set"] or s["blank"] for s in states),
                "problem": _is_problem(report, states),
                "settings": states,
            }
        )
    return rows


def cmd_providers(args: argparse.Namespace, out: TextIO) -> int:
    """List the installed provider packages. Exit status 1 when a provider this environment
    configures is disabled (a malformed value, a blank required variable, a broken package),
    else 0."""
    environ = os.environ
    rows = _providers_data(environ)
    problems = [row["entry_point"] for row in rows if row["problem"]]
    status = 1 if problems else 0
    allow = allowed_plugins(environ)
    unknown = None
    if allow:
        installed = [(row["entry_point"], row["distribution"]) for row in rows]
        unknown = unknown_allowed_names(allow, installed)
    if args.json:
        data = {
            "tracking_core": __version__,
            "tracking_providers": environ.get("TRACKING_PROVIDERS"),
            "tracking_providers_problem": unknown,
            "ok": not problems,
            "problems": problems,
            "plugins": rows,
        }
        json.dump(data, out, indent=2)
        out.write("\n")
        return status
    out.write(f"tracking-core {__version__}\n")
    if allow is not None:
        out.write(f"TRACKING_PROVIDERS allows: {', '.join(sorted(allow)) or 'none'}\n")
    if unknown:
        out.write(f"{unknown}\n")
    if not rows:
        out.write("No provider packages are installed (pip install tracking-posthog, ...).\n")
        return status
    for row in rows:
        dist = f"{row['distribution'] or '?'} {row['version'] or ''}".strip()
        names = f" as {', '.join(row['providers'])}" if row["providers"] else ""
        out.write(f"\n{row['entry_point']}  ({dist})\n  {row['status']}{names}\n")
        for setting in row["settings"]:
            flag = " (required)" if setting["required"] else ""
            out.write(f"    {setting['name']}{flag}: {setting['value']}\n")
    if problems:
        out.write(f"\nDisabled by a problem (see above): {', '.join(problems)}\n")
    return status


def _parse_prop(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--prop needs key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


class _Watch:
    """Prints each provider's failures while `tracking send` waits (from its counters)."""

    def __init__(self, names: Sequence[str], before: Mapping[str, ProviderStats]) -> None:
        self.names = names
        self.before = before
        self.seen = {name: (stats.failed, stats.last_error) for name, stats in before.items()}
        self.shown: dict[str, int] = {}  # failures already printed, per provider

    def report(self, out: TextIO) -> None:
        now = api.tracking_stats()
        for name in self.names:
            stats = now.get(name)
            if stats is None:
                continue
            state = (stats.failed, stats.last_error)
            if state == self.seen.get(name):
                continue
            self.seen[name] = state
            if stats.last_error is None:
                continue
            then = self.before.get(name)
            failures = stats.failed - (then.failed if then else 0)
            shown = self.shown.get(name, 0)
            self.shown[name] = failures
            if failures <= shown:
                which = "failed"
            elif failures == shown + 1:
                which = f"attempt {failures} failed"
            else:
                which = f"attempts {shown + 1}-{failures} failed"
            out.write(f"  {name}: {which}: {stats.last_error}\n")
            out.flush()


def cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    """Send one event through every enabled provider within ``--timeout`` seconds, print each
    failure as it happens, then a table of outcomes. Exit status 0 when every provider
    delivered, 1 when any did not, 2 when none is enabled."""
    names = api.list_tracking_providers()
    if not names:
        out.write(
            "No provider is enabled in this environment; `tracking providers` shows which "
            "variables enable each installed package.\n"
        )
        return 2
    if args.validate and not (names := validation.start(names, out)):  # validation.py
        return 2
    budget: float = args.timeout
    before = api.tracking_stats()
    properties = dict(args.prop or [])
    api.track(args.event, properties, user_id=args.user_id, anonymous_id=args.anonymous_id)
    # Shutdown is the wait: it sends at once, cuts backoffs and HTTP timeouts to what is left
    # of the budget, gives up on what could only be retried after it, and returns in time.
    finished: list[bool] = []
    waiter = threading.Thread(
        target=lambda: finished.append(api.shutdown_tracking(budget)),
        name="tracking-send",
        daemon=True,
    )
    watch = _Watch(names, before)
    out.write(f"Sending {args.event!r} to {', '.join(names)}; waiting {budget:g}s at most.\n")
    out.flush()
    waiter.start()
    interrupted = False
    try:
        while waiter.is_alive():
            waiter.join(0.2)
            watch.report(out)
    except KeyboardInterrupt:
        interrupted = True
        out.write("Interrupted; the outcome so far:\n")
    in_time = bool(finished) and finished[0]
    after = api.tracking_stats()
    failed = not in_time
    out.write(f"{'provider':<14} {'outcome':<12} {'HTTP':>5}  detail\n")
    for name in names:
        now, then = after.get(name), before.get(name)
        if now is None:
            continue
        delivered = now.delivered - (then.delivered if then else 0)
        drops = {
            reason: count - (then.dropped.get(reason, 0) if then else 0)
            for reason, count in now.dropped.items()
        }
        drops = {reason: count for reason, count in drops.items() if count}
        status = "" if now.last_status is None else str(now.last_status)
        last = f"; last error: {now.last_error}" if now.last_error else ""
        if delivered and not drops:
            outcome, detail = "delivered", ""
        elif drops.keys() == {"shutdown"} and in_time:
            outcome = "gave up"
            detail = (
                f"the next attempt could only come after the {budget:g}s budget (--timeout)" + last
            )
        elif drops.keys() == {"shutdown"}:
            outcome = "no answer"
            detail = f"not delivered within the {budget:g}s budget (--timeout){last}"
        elif drops:
            outcome = "dropped"
            detail = ", ".join(drops) + (f": {now.last_error}" if now.last_error else "")
        else:
            outcome = "no answer"
            detail = f"still waiting at the end of the {budget:g}s budget (--timeout){last}"
        if outcome != "delivered":
            failed = True
        out.write(f"{name:<14} {outcome:<12} {status:>5}  {detail}\n")
    out.flush()
    if interrupted:
        return 130
    if args.validate and validation.report(out):
        failed = True
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from .demo import run_demo

    return run_demo(out, events_per_worker=args.events, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracking",
        description="tracking-core: inspect providers, send a test event, run the demo.",
    )
    parser.add_argument("--version", action="version", version=f"tracking-core {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    providers = commands.add_parser(
        "providers", help="list installed provider packages and whether they are enabled"
    )
    providers.add_argument("--json", action="store_true", help="machine-readable output")
    providers.set_defaults(func=cmd_providers)

    send = commands.add_parser(
        "send", help="send one event through every enabled provider and report the outcome"
    )
    send.add_argument("event", help="the event name")
    send.add_argument(
        "--prop",
        action="append",
        type=_parse_prop,
        metavar="KEY=VALUE",
        help="a property (VALUE is parsed as JSON when it can be: 3, true, null)",
    )
    send.add_argument("--user-id")
    send.add_argument("--anonymous-id")
    send.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="the whole budget: seconds to wait for the answers, retries included (30)",
    )
    validate = "only to validation endpoints (GA4 has one): nothing recorded, findings printed"
    send.add_argument("--validate", action="store_true", help=validate)
    send.set_defaults(func=cmd_send)

    demo = commands.add_parser("demo", help="run the end-to-end demo on loopback")
    demo.add_argument("--events", type=int, default=250, help="events per simulated worker (250)")
    demo.add_argument("--quiet", action="store_true", help="only the final table")
    demo.set_defaults(func=cmd_demo)
    add_installed_commands(commands)
    return parser


def add_installed_commands(commands: Any) -> None:
    """Each ``tracking_core.commands`` entry point names ``add(commands)``, which adds a command
    with ``func(args, out) -> int``; one that fails is told on stderr, none replaces ours."""
    from importlib import metadata

    for entry in sorted(metadata.entry_points(group="tracking_core.commands"), key=str):
        try:
            if entry.name not in commands.choices:
                entry.load()(commands)
        except Exception as exc:
            sys.stderr.write(f"tracking: command {entry.name!r} not added: {exc!r}\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args, out or sys.stdout))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
