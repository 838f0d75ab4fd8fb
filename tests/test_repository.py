"""The repository keeps its promises: README commands, CI, documented API and variables."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import tracking_core
from tracking_core import hookspecs
from tracking_core.discovery import discover
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
    assert hooks == [
        "tracking_provider_fake",
        "tracking_provider_settings",
        "tracking_register_providers",
    ]
    for hook in hooks:
        assert f"`{hook}" in guide, f"hook {hook} is not documented"
        assert getattr(hookspecs, hook).__doc__


def test_every_engine_variable_is_documented() -> None:
    config = (DOCS / "configuration.md").read_text()
    # Each engine setting is read from TRACKING_<FIELD NAME> (EngineSettings.from_environ).
    variables = {"TRACKING_" + field.name.upper() for field in dataclasses.fields(EngineSettings)}
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


def titled_blocks(markdown: str) -> list[tuple[str, str, int]]:
    """``(title, content, offset)`` of every fenced block whose info string has
    ``title="<path>"``, in the page's order."""
    blocks = []
    for block in FENCED.finditer(markdown):
        title = TITLE.search(block.group("info"))
        if title is not None:
            blocks.append((title.group(1), block.group("code"), block.start()))
    return blocks


def shown_files(markdown: str) -> dict[str, str]:
    """{path: content} as the titled blocks show each file: a file shown in several blocks
    (built step by step) is those blocks in order, joined by two blank lines."""
    parts: dict[str, list[str]] = {}
    for title, code, _ in titled_blocks(markdown):
        parts.setdefault(title, []).append(code.rstrip("\n"))
    return {title: "\n\n\n".join(codes) + "\n" for title, codes in parts.items()}


def test_no_page_includes_files_it_does_not_show() -> None:
    """Every page reads whole as plain Markdown (on GitHub, in an editor): no snippet lines."""
    pages = [ROOT / "README.md", *DOCS.rglob("*.md"), *ROOT.glob("providers/*/README.md")]
    assert len(pages) > 10
    for page in pages:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert "--8<--" not in line, f"{page.relative_to(ROOT)}:{number} includes a snippet"


def test_the_provider_guide_shows_every_file_of_the_example_package_as_it_is() -> None:
    guide = (DOCS / "writing-a-provider.md").read_text(encoding="utf-8")
    files = sorted(
        path.relative_to(ROOT).as_posix()
        for path in [EXAMPLE / "pyproject.toml", *EXAMPLE.rglob("*.py")]
        if "__pycache__" not in path.parts and path.read_text(encoding="utf-8").strip()
    )
    assert len(files) >= 3
    shown = shown_files(guide)
    assert sorted(shown) == files, "each file of the example package is shown, titled"
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(encoding="utf-8"), f"{path} differs from the guide"
    for path in shown:
        # GitHub does not show a block's title: the path is also written above its first block.
        opening = guide.rfind("\n", 0, guide.index(f'title="{path}"'))
        assert f"`{path}`" in guide[max(0, opening - 300) : opening], f"{path} is not named"


def test_the_guide_check_reads_titled_blocks_of_any_fence() -> None:
    text = (
        'Intro\n\n```python title="a/b.py"\nx = 1\n\n```\n\n'
        '~~~~toml title="c.toml"\n```\nnot the end\n~~~~\n\n```text\nuntitled\n```\n'
        'More\n\n```python title="a/b.py"\ny = 2\n```\n'
    )
    assert [(title, code) for title, code, _ in titled_blocks(text)] == [
        ("a/b.py", "x = 1\n\n"),
        ("c.toml", "```\nnot the end\n"),
        ("a/b.py", "y = 2\n"),
    ]
    assert shown_files(text) == {"a/b.py": "x = 1\n\n\ny = 2\n", "c.toml": "```\nnot the end\n"}


# -- the docs tables list what the providers declare -----------------------------------------------

BUILTIN = sorted(p.name for p in (ROOT / "providers").iterdir() if (p / "pyproject.toml").is_file())
#: (required, secret, default) of one variable.
Facts = tuple[bool, bool, "str | None"]
#: A variable in README's table: its name, then "(secret)" or "(default `value`)".
ANNOTATED = re.compile(r"`([A-Z][A-Z0-9_]*)`(?: \((?:(secret)|default `([^`]*)`)\))?")


def declared() -> dict[str, dict[str, Facts]]:
    """{package: {variable: facts}} of each built-in provider package, from the declarations
    that discovery reads (the `tracking_provider_settings` hook of its entry points)."""
    found: dict[str, dict[str, Facts]] = {}
    for report in discover(lambda provider: None, {}):
        name = (report.distribution or "").removeprefix("tracking-")
        if name in BUILTIN:  # a package may have several entry points (segment, rudderstack)
            assert report.error is None, report
            variables = {s.name: (s.required, s.secret, s.default) for s in report.settings}
            assert variables, f"{report.name} declares no variable"
            found.setdefault(name, {}).update(variables)
    assert sorted(found) == BUILTIN
    return found


def table_rows(markdown: str) -> list[dict[str, str]]:
    """Every row of every Markdown table, as {column header: cell}."""
    rows: list[dict[str, str]] = []
    lines = markdown.splitlines()
    for index, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|( *:?-+:? *\|)+", lines[index + 1].strip()):
            header = _cells(line)
            body = itertools.takewhile(lambda row: row.startswith("|"), lines[index + 2 :])
            rows += [dict(zip(header, _cells(row), strict=True)) for row in body]
    return rows


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def variable_table(markdown: str) -> dict[str, Facts]:
    """{variable: facts} from the tables with the columns variable, required, secret, default
    ("yes" or empty; a default in backticks)."""
    found: dict[str, Facts] = {}
    for row in table_rows(markdown):
        if {"variable", "required", "secret", "default"} <= row.keys():
            name = row["variable"].strip("`")
            assert name not in found, f"{name} is listed twice"
            assert {row["required"], row["secret"]} <= {"yes", ""}, row
            found[name] = (
                row["required"] == "yes",
                row["secret"] == "yes",
                row["default"].strip("`") or None,
            )
    return found


def package_table(markdown: str) -> dict[str, dict[str, Facts]]:
    """{package: {variable: facts}} from README's table: the "enabled by" column holds the
    required variables, each variable followed by "(secret)" or "(default `value`)"."""
    found: dict[str, dict[str, Facts]] = {}
    for row in table_rows(markdown):
        if {"package", "enabled by", "other variables"} <= row.keys():
            variables: dict[str, Facts] = {}
            for column, required in (("enabled by", True), ("other variables", False)):
                for match in ANNOTATED.finditer(row[column]):
                    variables[match[1]] = (required, match[2] is not None, match[3])
            found[row["package"].strip("`")] = variables
    return found


def packages_of(markdown: str) -> dict[str, str]:
    """{variable: package} from a table with a package column, where an empty package cell
    continues the row above's."""
    found: dict[str, str] = {}
    package = ""
    for row in table_rows(markdown):
        if {"package", "variable"} <= row.keys():
            package = row["package"].strip("`") or package
            found[row["variable"].strip("`")] = package
    return found


def test_the_docs_tables_list_exactly_the_declared_variables() -> None:
    declarations = declared()
    for name, variables in declarations.items():
        for page in (DOCS / "providers" / f"{name}.md", ROOT / "providers" / name / "README.md"):
            assert variable_table(page.read_text(encoding="utf-8")) == variables, page
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    every = {k: v for variables in declarations.values() for k, v in variables.items()}
    assert variable_table(configuration) == every
    assert packages_of(configuration) == {
        variable: f"tracking-{name}"
        for name, variables in declarations.items()
        for variable in variables
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert package_table(readme) == {f"tracking-{n}": v for n, v in declarations.items()}


def test_the_table_readers_read_each_fact() -> None:
    page = (
        "| variable | required | secret | default | meaning |\n|---|---|---|---|---|\n"
        "| `A_KEY` | yes | yes | | enables it |\n| `A_HOST` | | | `https://a.example` | URL |\n"
    )
    assert variable_table(page) == {
        "A_KEY": (True, True, None),
        "A_HOST": (False, False, "https://a.example"),
    }
    readme = (
        "| package | enabled by | other variables |\n|---|---|---|\n"
        "| `tracking-a` | `A_KEY` (secret) | `A_HOST` (default `https://a.example`), `A_ID` |\n"
    )
    assert package_table(readme) == {
        "tracking-a": {
            "A_KEY": (True, True, None),
            "A_HOST": (False, False, "https://a.example"),
            "A_ID": (False, False, None),
        }
    }
