"""The one entry point for checks: ``nox -s tests lint types`` (and ``bench``).

``tests`` runs across every supported Python that is installed (pyenv's versions are found even
when they are not on PATH); ``wheels`` tests what we ship: it builds every wheel and installs them
into a clean environment.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PACKAGE_DIRS = ["tracking_core", *(glob.glob("providers/*/tracking_*"))]

nox.options.sessions = ["tests", "lint", "types"]
nox.options.reuse_existing_virtualenvs = True

# pyenv installs interpreters that are not on PATH unless selected; let nox find them.
for version_dir in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin"))):
    os.environ["PATH"] = version_dir + os.pathsep + os.environ["PATH"]


def install_project(session: nox.Session) -> None:
    """What README's test command installs: requirements-dev.txt (core, providers, example)."""
    session.install("-r", "requirements-dev.txt")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The full test suite (the same command README.md gives)."""
    install_project(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def types(session: nox.Session) -> None:
    """mypy --strict over the core, every provider package and the tests."""
    install_project(session)
    session.install("mypy>=1.10")
    session.run(
        "mypy",
        "--strict",
        *PACKAGE_DIRS,
        "tests",
        "benchmarks",
        "examples/fanout.py",
        "examples/tracking-acme/tracking_acme",
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (they measure; they never fail on a number): tracking-core's own, then the
    comparison with the vendors' SDKs (see bench_peers)."""
    install_project(session)
    session.install("-r", "benchmarks/peers/requirements.txt")
    for script in sorted(ROOT.glob("benchmarks/bench_*.py")):
        session.run("python", str(script), *session.posargs)
    session.run("python", "benchmarks/peers/driver.py")


@nox.session(python="3.11")
def bench_peers(session: nox.Session) -> None:
    """tracking-core beside posthog, segment-analytics-python, mixpanel and amplitude-analytics
    (installed in this session's venv only): one Markdown table per measurement.

    Arguments go to the driver, e.g. ``nox -s bench_peers -- --events 5000 --clients
    tracking-core-1,posthog``; ``-- --help`` lists them.
    """
    install_project(session)
    session.install("-r", "benchmarks/peers/requirements.txt")
    session.run("python", "benchmarks/peers/driver.py", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs, strict: any warning fails the build)."""
    session.install("mkdocs>=1.5", "pymdown-extensions>=10")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
