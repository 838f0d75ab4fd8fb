"""The repository keeps its promises: README commands, CI, documented API and variables."""

from __future__ import annotations

import re
from pathlib import Path

import tracking_core
from tracking_core import hookspecs
from tracking_core.settings import EngineSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md must open with a bash block"
    assert text.index(block.group(0)) < text.index("## "), "the commands come first"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    demo, tests = readme_commands()
    assert "python" in demo and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()
    assert "set -euo pipefail" in ci


def test_every_public_name_is_documented() -> None:
    api = (DOCS / "api.md").read_text()
    missing = [name for name in tracking_core.__all__ if f"`{name}" not in api]
    assert not missing, f"undocumented in docs/api.md: {missing}"


def test_every_hook_is_documented() -> None:
    guide = (DOCS / "writing-a-provider.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("tracking_")]
    assert hooks == ["tracking_provider_settings", "tracking_register_providers"]
    for hook in hooks:
        assert f"`{hook}" in guide, f"hook {hook} is not documented"
        assert getattr(hookspecs, hook).__doc__


def test_every_engine_variable_is_documented() -> None:
    config = (DOCS / "configuration.md").read_text()
    source = (ROOT / "tracking_core" / "settings.py").read_text()
    variables = set(re.findall(r'"(TRACKING_[A-Z_]+)"', source))
    assert len(variables) >= 13
    for name in [*variables, "TRACKING_DISABLED", "TRACKING_PROVIDERS"]:
        assert f"`{name}`" in config, f"{name} is not in docs/configuration.md"
    assert EngineSettings().shutdown_timeout == 5.0
    assert "| 5 |" in config  # the documented shutdown default


def test_every_package_ships_py_typed() -> None:
    packages = [ROOT / "tracking_core", *ROOT.glob("providers/*/tracking_*")]
    assert len(packages) >= 1
    for package in packages:
        assert (package / "py.typed").exists(), package
