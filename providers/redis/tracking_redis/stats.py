"""``tracking relay --stats``: the stream, the group and every relay's latest stats, read from
Redis (each relay publishes its own every few seconds)."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from tracking_core import __version__

from .connection import connect
from .relay import PUBLISH_INTERVAL, state_key
from .settings import RelaySettings

__all__ = ["group_stats", "render"]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _fields(reply: Any) -> dict[str, Any]:
    """A redis-py XINFO reply (a dict, or a flat list) as a dict of text keys and values."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    return {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply), 2)}


def group_stats(settings: RelaySettings) -> dict[str, Any]:
    """What ``tracking relay --stats --json`` prints (see docs/deployment.md)."""
    client = connect(settings, "tracking-relay-stats")
    stream, group = settings.stream, settings.group
    state = {_text(k): int(v) for k, v in client.hgetall(state_key(settings)).items()}
    info: dict[str, Any] = {}
    found: dict[str, Any] = {}
    consumers: dict[str, dict[str, Any]] = {}
    if client.exists(stream):
        raw = client.execute_command("XINFO", "STREAM", stream)
        info = {k: v for k, v in _fields(raw).items() if not isinstance(v, list)}
        groups = [_fields(g) for g in client.execute_command("XINFO", "GROUPS", stream)]
        found = next((g for g in groups if g.get("name") == group), {})
        if found:
            for raw_consumer in client.execute_command("XINFO", "CONSUMERS", stream, group):
                consumer = _fields(raw_consumer)
                consumers[str(consumer["name"])] = consumer
    now = time.time()
    relays = []
    published = client.hgetall(f"{state_key(settings)}:relays")
    for name, data in sorted(published.items()):
        relay = json.loads(data)
        if relay.get("state") == "running" and now - relay["updated"] > 3 * PUBLISH_INTERVAL:
            relay["state"] = "gone"  # stopped publishing: killed, or cut off from Redis
        relay["pending"] = consumers.get(_text(name), {}).get("pending", 0)
        relays.append(relay)
    dead = int(client.xlen(settings.dead_letter_stream))
    problems = []
    if state.get("trimmed"):
        problems.append(
            f"{state['trimmed']} entries were trimmed from {stream} before a relay delivered "
            "them (raise TRACKING_REDIS_MAXLEN, or add relays)"
        )
    if dead:
        problems.append(
            f"{dead} entries wait in the dead-letter stream {settings.dead_letter_stream}"
        )
    waiting = int(found.get("lag") or 0) + int(found.get("pending") or 0)
    if waiting and not any(relay["state"] == "running" for relay in relays):
        problems.append(f"{waiting} entries wait and no relay is running")
    return {
        "tracking_core": __version__,
        "stream": stream,
        "group": group,
        "dead_letter_stream": settings.dead_letter_stream,
        "ok": not problems,
        "problems": problems,
        "stream_length": info.get("length", 0),
        "entries_added": info.get("entries-added", 0),
        "pending": found.get("pending", 0),
        "lag": found.get("lag"),
        "dead_letter_length": dead,
        "acknowledged": state.get("acknowledged", 0),
        "trimmed": state.get("trimmed", 0),
        "dead_lettered": state.get("dead_lettered", 0),
        "relays": relays,
    }


def render(data: dict[str, Any], out: TextIO) -> None:
    """The human form of `group_stats`."""
    out.write(f"tracking-core {data['tracking_core']}\n")
    out.write(
        f"stream {data['stream']}: {data['stream_length']} entries now, "
        f"{data['entries_added']} ever added\n"
        f"group {data['group']}: {data['pending']} pending, {data['lag']} not yet read, "
        f"{data['acknowledged']} acknowledged, {data['trimmed']} trimmed before delivery, "
        f"{data['dead_lettered']} dead-lettered ({data['dead_letter_length']} in "
        f"{data['dead_letter_stream']})\n"
    )
    for relay in data["relays"]:
        out.write(
            f"\n{relay['consumer']}  {relay['state']}\n"
            f"  read {relay['read']}, claimed {relay['claimed']}, acknowledged "
            f"{relay['acknowledged']}, pending {relay['pending']}, in flight "
            f"{relay['in_flight']}, trimmed {relay['trimmed']}, dead-lettered "
            f"{relay['dead_lettered']}\n"
        )
        if relay["left_pending"]:
            left = ", ".join(f"{n} {why}" for why, n in sorted(relay["left_pending"].items()))
            out.write(f"  left pending to deliver again: {left}\n")
        for name, stats in sorted(relay["providers"].items()):
            dropped = ", ".join(f"{n} {why}" for why, n in sorted(stats["dropped"].items()))
            out.write(
                f"  {name}: {stats['delivered']} delivered, dropped: {dropped or 'none'}, "
                f"{stats['queued']} queued\n"
            )
    if data["problems"]:
        out.write("\nProblems:\n" + "".join(f"  {p}\n" for p in data["problems"]))
