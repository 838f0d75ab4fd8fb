"""Entry points of one group, read from the installed distributions' metadata on ``sys.path``.

What `importlib.metadata.entry_points(group=...)` gives, for the plain case this library needs
(``*.dist-info`` and ``*.egg-info`` folders in the ``sys.path`` directories), without importing
`importlib.metadata`: that import alone (email, zipfile, pathlib, csv...) cost about 20-30 ms of
every process's first use. As there, the first distribution on ``sys.path`` wins a name.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["EntryPoint", "entry_points", "load"]


class EntryPoint:
    """One entry point: its `name`, its `value` (``module:attribute``), and the `distribution`
    name and `version` of the package that declares it (None when its metadata says none)."""

    __slots__ = ("distribution", "name", "value", "version")

    def __init__(self, name: str, value: str, distribution: str | None, version: str | None):
        self.name = name
        self.value = value
        self.distribution = distribution
        self.version = version

    def load(self) -> object:
        """Import the module and return the attribute the value names (the module itself when
        it names none), as `importlib.metadata.EntryPoint.load` does."""
        return load(self.value)

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r})"


def load(value: str) -> object:
    """What an entry point's ``module:attribute`` value names, the module imported (the module
    itself when it names no attribute; a dotted attribute is followed; ``[extras]`` ignored)."""
    import importlib

    module_name, _, attribute = value.partition("[")[0].strip().partition(":")
    found: object = importlib.import_module(module_name.strip())
    for part in attribute.strip().split(".") if attribute.strip() else ():
        found = getattr(found, part)
    return found


def _section(text: str, group: str) -> Iterator[tuple[str, str]]:
    """The ``name = value`` lines of the ``[group]`` section of an entry_points.txt."""
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _name_and_version(folder: str) -> tuple[str | None, str | None]:
    """``Name:`` and ``Version:`` from a distribution's METADATA (or an egg's PKG-INFO)."""
    name = version = None
    for file in ("METADATA", "PKG-INFO"):
        text = _read(os.path.join(folder, file))
        if text is None:
            continue
        for line in text.splitlines():
            if not line.strip():
                break  # the headers end at the first blank line
            key, _, value = line.partition(":")
            if key == "Name" and name is None:
                name = value.strip()
            elif key == "Version" and version is None:
                version = value.strip()
        break
    return name, version


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of `group` in every distribution on ``sys.path``; a name taken by a
    distribution earlier on the path hides the same name further on."""
    found: dict[str, EntryPoint] = {}
    for base in sys.path:
        try:
            listing = sorted(os.scandir(base or "."), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in listing:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            text = _read(os.path.join(entry.path, "entry_points.txt"))
            if text is None or f"[{group}]" not in text.replace(" ", ""):
                continue
            declared = list(_section(text, group))
            if not declared:
                continue
            distribution, version = _name_and_version(entry.path)
            for name, value in declared:
                found.setdefault(name, EntryPoint(name, value, distribution, version))
    return list(found.values())
