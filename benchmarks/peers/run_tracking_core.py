"""Runner: tracking-core, with its built-in providers enabled through the environment.

``--providers 1``: PostHog only. ``--providers 4``: PostHog, Mixpanel, Amplitude and the webhook,
every one pointed at the receiver. ``--json orjson``: with the ``orjson`` extra; by default the
runner hides orjson (as a plain ``pip install tracking-core`` has none). Everything else is
tracking-core's defaults (batch size 50, queue bound 100,000, shutdown budget 5 s, ...), unless
``--shutdown-budget`` is given.

    python benchmarks/peers/run_tracking_core.py --mode caller --url http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from common import TRACKING_CORE_DISTRIBUTIONS, Client, Setup, main

_ONE = ("posthog",)
_FOUR = ("posthog", "mixpanel", "amplitude", "webhook")


class TrackingCore(Client):
    distributions = TRACKING_CORE_DISTRIBUTIONS
    import_statement = "import tracking_core"
    configure_template = "tracking_core.discover_tracking_providers()"

    def __init__(self) -> None:
        self.providers: tuple[str, ...] = _ONE
        self.shutdown_budget: float | None = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--providers", type=int, choices=(1, 4), default=1)
        parser.add_argument(
            "--json",
            choices=("stdlib", "orjson"),
            default="stdlib",
            help="stdlib: as installed without the orjson extra (orjson hidden, if present); "
            "orjson: with the extra (it must be installed)",
        )
        parser.add_argument(
            "--shutdown-budget",
            type=float,
            default=None,
            help="TRACKING_SHUTDOWN_TIMEOUT for the stalled mode (default: the library's)",
        )

    def configure(self, args: argparse.Namespace) -> None:
        if args.json == "stdlib":
            sys.modules["orjson"] = None  # type: ignore[assignment]  # as if not installed
        else:
            import orjson  # noqa: F401  # the extra must be there to be measured
        self.providers = _ONE if args.providers == 1 else _FOUR
        self.vendors = self.providers
        self.shutdown_budget = args.shutdown_budget
        self.label = (
            "tracking-core, 1 provider (PostHog)"
            if args.providers == 1
            else "tracking-core, 4 providers"
        ) + (", orjson extra" if args.json == "orjson" else "")

    def environment(self, url: str, mode: str) -> dict[str, str]:
        env = {
            "TRACKING_PROVIDERS": ",".join(self.providers),
            "POSTHOG_API_KEY": "phc_benchmark",
            "POSTHOG_HOST": url,
        }
        if "mixpanel" in self.providers:
            env |= {"MIXPANEL_TOKEN": "benchmark-token", "MIXPANEL_HOST": url}
        if "amplitude" in self.providers:
            env |= {"AMPLITUDE_API_KEY": "benchmark-key", "AMPLITUDE_HOST": url}
        if "webhook" in self.providers:
            env["TRACKING_WEBHOOK_URL"] = url + "/webhook"
        if self.shutdown_budget is not None:
            env["TRACKING_SHUTDOWN_TIMEOUT"] = str(self.shutdown_budget)
        return env

    def setup(self, url: str, mode: str, events: int) -> Setup:
        import tracking_core
        from tracking_core.registry import runtime

        tracking_core.discover_tracking_providers()
        enabled = tracking_core.list_tracking_providers()
        if sorted(enabled) != sorted(self.providers):
            raise RuntimeError(f"expected providers {self.providers}, got {enabled}")
        track_ = tracking_core.track

        def track(name: str, properties: dict[str, Any], user_id: str) -> None:
            track_(name, properties, user_id=user_id)

        budget = runtime().engine.settings.shutdown_timeout
        return Setup(
            track,
            tracking_core.flush_tracking,
            tracking_core.shutdown_tracking,
            f"{budget:g} s (TRACKING_SHUTDOWN_TIMEOUT)",
        )


if __name__ == "__main__":
    main(TrackingCore())
