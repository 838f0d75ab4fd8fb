"""The ``tracking`` command (also ``python -m tracking_core``).

- ``tracking providers [--json]``: every installed provider package, whether this environment
  enables it, and if not, which variable would (or why it is disabled). Secrets are masked.
- ``tracking send EVENT [--prop key=value ...] [--user-id ID]``: sends one event through every
  enabled provider, waits, and prints each provider's outcome; non-zero exit when any failed.
- ``tracking demo``: the library's job end to end on loopback, no vendor account needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from . import api
from ._version import __version__
from .discovery import PluginReport, allowed_plugins
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


def _setting_state(setting: ProviderSetting, environ: Mapping[str, str]) -> dict[str, Any]:
    value = environ.get(setting.name)
    via_file = environ.get(f"{setting.name}_FILE") if setting.secret else None
    if value:
        shown = "set (hidden)" if setting.secret else _without_credentials(value)
    elif via_file:
        shown = f"set via {setting.name}_FILE (hidden)"
    else:
        shown = "not set" + (f" (default {setting.default})" if setting.default else "")
    return {
        "name": setting.name,
        "description": setting.description,
        "required": setting.required,
        "secret": setting.secret,
        "set": bool(value or via_file),
        "value": shown,
    }


def _status(report: PluginReport, environ: Mapping[str, str]) -> str:
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
    required = [s.name for s in report.settings if s.required]
    if required:
        return "disabled: set " + " or ".join(required) + " to enable it"
    return "disabled: its variables are not set"


def _providers_data(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    reports = api.discover_tracking_providers()
    rows = []
    for report in sorted(reports, key=lambda r: r.name):
        rows.append(
            {
                "entry_point": report.name,
                "distribution": report.distribution,
                "version": report.version,
                "enabled": bool(report.providers),
                "providers": list(report.providers),
                "status": _status(report, environ),
                "error": report.error,
                "settings": [_setting_state(s, environ) for s in report.settings],
            }
        )
    return rows


def cmd_providers(args: argparse.Namespace, out: TextIO) -> int:
    environ = os.environ
    rows = _providers_data(environ)
    if args.json:
        data = {
            "tracking_core": __version__,
            "tracking_providers": environ.get("TRACKING_PROVIDERS"),
            "plugins": rows,
        }
        json.dump(data, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"tracking-core {__version__}\n")
    allow = allowed_plugins(environ)
    if allow is not None:
        out.write(f"TRACKING_PROVIDERS allows: {', '.join(sorted(allow)) or 'none'}\n")
    if not rows:
        out.write("No provider packages are installed (pip install tracking-posthog, ...).\n")
        return 0
    for row in rows:
        dist = f"{row['distribution'] or '?'} {row['version'] or ''}".strip()
        names = f" as {', '.join(row['providers'])}" if row["providers"] else ""
        out.write(f"\n{row['entry_point']}  ({dist})\n  {row['status']}{names}\n")
        for setting in row["settings"]:
            flag = " (required)" if setting["required"] else ""
            out.write(f"    {setting['name']}{flag}: {setting['value']}\n")
    return 0


def _parse_prop(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--prop needs key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    names = api.list_tracking_providers()
    if not names:
        out.write(
            "No provider is enabled in this environment; `tracking providers` shows which "
            "variables enable each installed package.\n"
        )
        return 2
    before = api.tracking_stats()
    properties = dict(args.prop or [])
    api.track(args.event, properties, user_id=args.user_id, anonymous_id=args.anonymous_id)
    finished = api.flush_tracking(args.timeout)
    after = api.tracking_stats()
    failed = False
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
        if delivered:
            outcome, detail = "delivered", ""
        elif drops:
            outcome = "dropped"
            detail = ", ".join(drops) + (f": {now.last_error}" if now.last_error else "")
            failed = True
        else:
            outcome = "pending"
            detail = f"not finished within {args.timeout:g}s" + (
                f"; last error: {now.last_error}" if now.last_error else ""
            )
            failed = True
        out.write(f"{name:<14} {outcome:<12} {status:>5}  {detail}\n")
    if not finished:
        failed = True
    api.shutdown_tracking(1.0)
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
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    send.set_defaults(func=cmd_send)

    demo = commands.add_parser("demo", help="run the end-to-end demo on loopback")
    demo.add_argument("--events", type=int, default=250, help="events per simulated worker (250)")
    demo.add_argument("--quiet", action="store_true", help="only the final table")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args, out or sys.stdout))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
