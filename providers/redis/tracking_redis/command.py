"""``tracking relay``: the command tracking-redis adds to the ``tracking`` CLI (through the
``tracking_core.commands`` entry-point group; this module stays light to import).

- ``tracking relay``: run one relay until SIGTERM or SIGINT, then stop within
  ``TRACKING_SHUTDOWN_TIMEOUT``. Exit status 0 after a clean stop, 1 when Redis cannot be
  reached or refuses, 2 when ``TRACKING_REDIS_URL`` is not set (or malformed) or no provider is
  enabled in this environment.
- ``tracking relay --stats [--json]``: the stream, the group and each relay's latest stats.
  Exit status 0, or 1 when there is a problem to look at (entries trimmed before delivery,
  dead-lettered entries, entries waiting with no relay running) or Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, TextIO

__all__ = ["add_command", "run_command"]


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``relay`` to the ``tracking`` command's subcommands."""
    relay = commands.add_parser(
        "relay",
        help="deliver the Redis stream to the providers enabled here (tracking-redis)",
        description="Read the Redis stream (TRACKING_REDIS_URL, TRACKING_REDIS_STREAM) as one "
        "consumer of the relays' group and deliver each entry through the providers this "
        "environment enables. See docs/deployment.md.",
    )
    relay.add_argument(
        "--stats", action="store_true", help="print the stream's, group's and relays' stats"
    )
    relay.add_argument("--json", action="store_true", help="with --stats: machine-readable")
    relay.set_defaults(func=run_command)


def _settings(out: TextIO) -> Any:
    from tracking_core import SettingsError

    from .settings import RelaySettings

    try:
        settings = RelaySettings.from_environ(os.environ)
    except SettingsError as exc:
        out.write(f"tracking relay: {exc}\n")
        return None
    if settings is None:
        out.write("tracking relay: set TRACKING_REDIS_URL (redis://host:6379/0) to use it\n")
    return settings


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``tracking relay`` as `args` say; returns the exit status."""
    from redis.exceptions import RedisError

    from .connection import describe, secrets_of

    settings = _settings(out)
    if settings is None:
        return 2
    try:
        if args.stats:
            return _stats(settings, args.json, out)
        return _relay(settings, out)
    except (RedisError, OSError, RuntimeError) as exc:
        out.write(f"tracking relay: {describe(exc, secrets_of(settings))}\n")
        return 1


def _stats(settings: Any, as_json: bool, out: TextIO) -> int:
    from .stats import group_stats, render

    data = group_stats(settings)
    if as_json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        render(data, out)
    return 0 if data["ok"] else 1


def _relay(settings: Any, out: TextIO) -> int:
    from .relay import Relay

    relay = Relay(settings)
    for how in (signal.SIGTERM, signal.SIGINT):
        signal.signal(how, lambda number, frame: relay.stop())
    providers = relay.prepare()
    if not providers:
        out.write(
            "tracking relay: no provider is enabled in this environment; `tracking providers` "
            "shows which variables enable each installed package\n"
        )
        return 2
    out.write(
        f"tracking relay: {relay.consumer} reads {settings.stream} (group {settings.group}) "
        f"for {', '.join(providers)}\n"
    )
    out.flush()
    status = relay.run()
    out.write(f"tracking relay: stopped; stats {json.dumps(relay.snapshot('stopped'))}\n")
    out.flush()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: tracking relay")
