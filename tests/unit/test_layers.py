"""The rooms import only the floors below them (STYLE.md): read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# room: the rooms it may import (besides itself)
ALLOWED = {
    "core": set(),
    "providers": {"core"},
    "store": {"core"},
    "runtime": {"core", "providers", "store"},
    "listeners": {"core", "providers", "store", "runtime"},
    "dispatch": {"core", "providers", "store", "runtime"},
    "receiver": {"core", "providers", "store", "runtime", "listeners", "dispatch"},
    "console": {"core", "providers", "store", "runtime", "listeners", "dispatch", "receiver"},
    "simulators": {"core", "providers", "store", "runtime", "listeners", "dispatch", "receiver"},
}
# The command line is the top of the house: `jobtrail demo` starts the simulators. The
# application factory mounts the console, which reads through the API's own filters.
EXCEPTIONS = {"receiver/cli.py": {"simulators"}, "receiver/app.py": {"console"}}


def imported_rooms(path: Path, bare: list[str] | None = None) -> set[str]:
    """The rooms `path` imports; each import of a room outside `jobtrail.` is added to
    `bare`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            room = parts[1] if parts[0] == "jobtrail" and len(parts) > 1 else parts[0]
            if room in ALLOWED:
                found.add(room)
                if parts[0] != "jobtrail" and bare is not None:
                    bare.append(name)
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_floors_below_it(room: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(
            imported_rooms(path) - ALLOWED[room] - {room} - EXCEPTIONS.get(str(path.relative_to(ROOT)), set())
        )
        for path in sorted((ROOT / room).rglob("*.py"))
    }
    assert {} == {path: rooms for path, rooms in wrong.items() if rooms}


def test_every_import_of_a_room_goes_through_the_jobtrail_namespace() -> None:
    """`core.model` and `jobtrail.core.model` would be two modules (two `Status` enums):
    only the installed name is used, by the code, its tests and its benchmarks."""
    bare: dict[str, list[str]] = {}
    for folder in (*ALLOWED, "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found: list[str] = []
            imported_rooms(path, found)
            if found:
                bare[str(path.relative_to(ROOT))] = found
    assert {} == bare
