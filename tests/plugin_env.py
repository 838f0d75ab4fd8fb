"""Helpers for tests that install real packages into a throw-away virtual environment.

The venv is made without pip (fast) and sees this environment's packages through a ``.pth`` file
that calls ``site.addsitedir`` (so editable installs work too); packages are installed into it
with this environment's pip (``pip --python``), without network access.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path


class PluginVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
        self.python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        target = Path(
            subprocess.check_output(
                [
                    str(self.python),
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                ],
                text=True,
            ).strip()
        )
        outer = [*site.getsitepackages(), site.getusersitepackages()]
        lines = [f"import site; site.addsitedir({path!r})" for path in outer if os.path.isdir(path)]
        (target / "_outer_env.pth").write_text("\n".join(lines) + "\n")

    def install(self, *paths: Path) -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(self.python),
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                *map(str, paths),
            ],
            check=True,
            capture_output=True,
            text=True,
        )

    def run(
        self, script: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACKING_")}
        return subprocess.run(
            [str(self.python), "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**clean, **(env or {})},
        )


def write_package(
    root: Path, dist: str, module: str, entry_name: str, source: str, target: str | None = None
) -> Path:
    """A minimal provider package (hatchling) with one entry point in ``tracking_core``, naming
    `target` (``module:object``) or, by default, the module itself."""
    package = root / dist
    (package / module).mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{dist}"
            version = "1.2.3"
            dependencies = ["tracking-core"]

            [project.entry-points.tracking_core]
            {entry_name} = "{target or module}"

            [tool.hatch.build.targets.wheel]
            packages = ["{module}"]
            """
        )
    )
    (package / module / "__init__.py").write_text(textwrap.dedent(source))
    return package
