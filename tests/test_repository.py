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


# -- docs/writing-a-provider.md shows the example package's files, as they are ----------------

EXAMPLE = ROOT / "examples" / "tracking-acme"
#: A fenced code block: its fence (``` or ~~~, three or more), info string and content.
FENCED = re.compile(
    r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
TITLE = re.compile(r'\btitle="([^"]+)"')


def titled_blocks(markdown: str) -> dict[str, str]:
    """{title: content} of every fenced block whose info string has ``title="<path>"``."""
    blocks: dict[str, str] = {}
    for block in FENCED.finditer(markdown):
        title = TITLE.search(block.group("info"))
        if title is not None:
            assert title.group(1) not in blocks, f"{title.group(1)} is shown twice"
            blocks[title.group(1)] = block.group("code")
    return blocks


def test_no_page_includes_files_it_does_not_show() -> None:
    """Every page reads whole as plain Markdown (on GitHub, in an editor): no snippet lines."""
    pages = [ROOT / "README.md", *DOCS.rglob("*.md"), *ROOT.glob("providers/*/README.md")]
    assert len(pages) > 10
    for page in pages:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert "--8<--" not in line, f"{page.relative_to(ROOT)}:{number} includes a snippet"


def test_the_provider_guide_shows_every_file_of_the_example_package_as_it_is() -> None:
    guide = (DOCS / "writing-a-provider.md").read_text(encoding="utf-8")
    blocks = titled_blocks(guide)
    files = sorted(
        path.relative_to(ROOT).as_posix()
        for path in [EXAMPLE / "pyproject.toml", *EXAMPLE.rglob("*.py")]
        if "__pycache__" not in path.parts and path.read_text(encoding="utf-8").strip()
    )
    assert len(files) >= 3
    assert sorted(blocks) == files, "each file of the example package is shown once, titled"
    for path, code in blocks.items():
        assert code == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from the guide"
        # GitHub does not show a block's title: the path is also written just above the block.
        opening = guide.rfind("\n", 0, guide.index(f'title="{path}"'))
        assert f"`{path}`" in guide[max(0, opening - 300) : opening], f"{path} is not named"


def test_the_guide_check_reads_titled_blocks_of_any_fence() -> None:
    text = (
        'Intro\n\n```python title="a/b.py"\nx = 1\n\n```\n\n'
        '~~~~toml title="c.toml"\n```\nnot the end\n~~~~\n\n```text\nuntitled\n```\n'
    )
    assert titled_blocks(text) == {"a/b.py": "x = 1\n\n", "c.toml": "```\nnot the end\n"}
