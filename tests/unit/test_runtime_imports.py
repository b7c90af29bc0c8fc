"""The runtime's imports: no cycle, and stores by what they store.

The graph is read from the source (every import, those under TYPE_CHECKING
and inside functions included), so a cycle that only a type checker or a late
import would meet is caught too.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import workers.runtime

RUNTIME = Path(workers.runtime.__file__).parent
PACKAGE = "workers.runtime"
#: Each store's tables, and the modules that may write their names in SQL.
TABLES = {
    "fleet_inbox": {"claims", "group_commit"},
    "fleet_events": {"timeline"},
    "fleet_attempts": {"attempts"},
}
STORES = ["claims", "group_commit", "timeline", "attempts", "inbox"]


@cache
def graph() -> dict[str, set[str]]:
    """Module of workers/runtime → the modules of workers/runtime it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted(RUNTIME.glob("*.py")):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(PACKAGE + "."):
                    imported.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                imported.update(
                    alias.name.split(".")[2]
                    for alias in node.names
                    if alias.name.startswith(PACKAGE + ".")
                )
        found[path.stem] = imported - {path.stem}
    return found


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it (first = last), or None."""
    state: dict[str, str] = {}  # visiting | done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "visiting"
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "visiting":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


class TestImportGraph:
    def test_the_cycle_finder_finds_a_cycle(self) -> None:
        """The check below can fail: a two-module cycle is reported along its path."""
        assert cycle({"a": {"b"}, "b": {"a"}, "c": set()}) == ["a", "b", "a"]
        assert cycle({"a": {"b"}, "b": set()}) is None

    def test_the_runtime_has_no_import_cycle(self) -> None:
        """No module of workers/runtime imports, even for types, one that imports it back."""
        assert cycle(graph()) is None

    def test_each_store_imports_only_what_it_builds_on(self) -> None:
        """timeline and attempts stand alone; claims writes timeline rows with its
        claims; group commit shares a transaction among claims; only the facade
        knows all three."""
        edges = graph()
        assert edges["timeline"] == set()
        assert edges["attempts"] == set()
        assert edges["claims"] == {"timeline", "outgoing"}
        assert edges["group_commit"] == {"claims", "timeline", "outgoing"}
        assert edges["inbox"] == {"claims", "group_commit", "timeline", "attempts"}

    def test_no_store_imports_the_facade(self) -> None:
        """The facade is the top: the stores never reach back into it."""
        importers = {module for module, targets in graph().items() if "inbox" in targets}
        assert importers.isdisjoint({"claims", "group_commit", "timeline", "attempts"})

    @pytest.mark.parametrize("module", STORES)
    def test_each_store_imports_alone_without_the_database_driver(self, module: str) -> None:
        """In a fresh interpreter, each store module imports first and on its own, and
        loads no asyncpg: workers without a database never load the driver."""
        # When
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys, {PACKAGE}.{module}; print('asyncpg' in sys.modules)",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        # Then
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "False"


class TestTables:
    @pytest.mark.parametrize(("table", "owners"), sorted(TABLES.items()))
    def test_a_table_is_written_only_by_its_store(self, table: str, owners: set[str]) -> None:
        """Each table's DDL and statements live in its store's modules; the others
        build on that store's statements (`timeline.insert`, ...), never on its name."""
        statement = re.compile(rf"\b(?:TABLE(?: IF NOT EXISTS)?|INTO|UPDATE|FROM|ON)\s+{table}\b")
        writers = {path.stem for path in RUNTIME.glob("*.py") if statement.search(path.read_text())}
        assert writers == owners

    @pytest.mark.parametrize("module", ["claims", "timeline", "attempts"])
    def test_each_store_creates_its_own_tables_only(self, module: str) -> None:
        """A store's SCHEMA creates its tables and no other store's."""
        # Given
        schema = __import__(f"{PACKAGE}.{module}", fromlist=["SCHEMA"]).SCHEMA
        # Then
        created = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema))
        assert created == {table for table, owners in TABLES.items() if module in owners}
