"""A team's project: its topology file found in the working directory, its code on the
import path, and its contracts those its topology names, and no others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import DuplicateContract, default_registry
from topology import loads
from workers.context import Context
from workers.errors import DatabaseRequired
from workers.loader import load_worker
from workers.project import (
    ContractsUnavailable,
    register_contracts,
    unlisted_contracts,
    use_project_paths,
)

EVENTS = '''
from contracts import Event, Identifier


class CustomerSignedUp(Event, frozen=True, kw_only=True):
    """A customer made an account."""

    __routing_key__ = "customer.signed_up"

    customer_id: Identifier


class WelcomeSent(Event, frozen=True, kw_only=True):
    __routing_key__ = "welcome.sent"

    customer_id: Identifier
'''

WORKER = """
from {package}.events import CustomerSignedUp, WelcomeSent
from workers import Context, Worker

welcome = Worker("welcome")


@welcome.handles(CustomerSignedUp)
async def send(event: CustomerSignedUp, ctx: Context) -> WelcomeSent:
    return WelcomeSent(customer_id=event.customer_id)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A project directory with a package of its own (a unique name per test), as cwd."""
    package = f"shop_{tmp_path.name.replace('-', '_')}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "events.py").write_text(EVENTS)
    (tmp_path / package / "welcome.py").write_text(WORKER.format(package=package))
    monkeypatch.chdir(tmp_path)
    saved = list(sys.path)
    use_project_paths()
    yield package
    sys.path[:] = saved
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def topology(package: str, contracts: str = "") -> str:
    return f"""
{contracts}
exchanges: {{customers: {{}}}}
queues: {{welcome: {{bind: [{{exchange: customers, routing_key: customer.signed_up}}]}}}}
workers: {{welcome: {{module: {package}.welcome, queue: welcome, publish_to: customers}}}}
"""


class TestImportPath:
    def test_the_working_directory_comes_first(self, tmp_path: Path) -> None:
        """A project's package imports from where fleet runs, with no PYTHONPATH."""
        # Given
        saved = list(sys.path)
        try:
            # When
            use_project_paths(tmp_path / "conf" / "fleet.yaml")
            # Then
            assert sys.path[:2] == [str(Path.cwd()), str(tmp_path / "conf")]
        finally:
            sys.path[:] = saved


class TestContracts:
    def test_the_listed_modules_expose_the_contracts_without_a_decorator(
        self, project: str
    ) -> None:
        """Every Event class of `contracts:` modules is one of the fleet's contracts."""
        # Given
        spec = loads(topology(project, f"contracts: [{project}.events]"))
        # When
        registry = register_contracts(spec)
        # Then
        assert sorted(t.__wire_name__ for t in registry) == ["CustomerSignedUp", "WelcomeSent"]
        assert default_registry.lookup("CustomerSignedUp").__module__ == f"{project}.events"

    def test_without_a_list_the_handlers_contracts_are_the_fleets(self, project: str) -> None:
        """What the workers take and emit, when the topology names no modules."""
        # Given
        spec = loads(topology(project))
        workers = {"welcome": load_worker("welcome", spec.workers["welcome"])}
        # When
        registry = register_contracts(spec, workers)
        # Then
        assert sorted(t.__wire_name__ for t in registry) == ["CustomerSignedUp", "WelcomeSent"]

    def test_a_module_that_cannot_be_imported_is_one_line_naming_where_fleet_looked(
        self, project: str
    ) -> None:
        """The module, the error, the folders searched and what to do."""
        # Given
        spec = loads(topology(project, "contracts: [nowhere.events]"))
        # When
        with pytest.raises(ContractsUnavailable) as caught:
            register_contracts(spec)
        # Then
        message = str(caught.value)
        assert message.startswith("contracts[0]: cannot import 'nowhere.events' (No module")
        assert f"searched {Path.cwd()}" in message
        assert "run fleet in the project's directory" in message
        assert "\n" not in message

    def test_a_module_without_contracts_is_refused(self, project: str) -> None:
        """A list entry that exposes no Event is a mistake, not an empty fleet."""
        # Given
        spec = loads(topology(project, f"contracts: [{project}]"))
        # When / Then
        with pytest.raises(ContractsUnavailable, match="exposes no Event class"):
            register_contracts(spec)

    def test_two_classes_under_one_name_and_version_are_refused(
        self, project: str, tmp_path: Path
    ) -> None:
        """Within one project, a duplicate contract is an error naming the first holder."""
        # Given
        (tmp_path / project / "again.py").write_text(EVENTS)
        spec = loads(topology(project, f"contracts: [{project}.events, {project}.again]"))
        # When / Then
        with pytest.raises(DuplicateContract, match=f"already registered by {project}.events"):
            register_contracts(spec)

    def test_a_handlers_contract_missing_from_the_list_names_the_module_to_add(
        self, project: str, tmp_path: Path
    ) -> None:
        """topology check's finding: the handler's module, and the fix."""
        # Given: the list names another module, without the worker's events
        (tmp_path / project / "other.py").write_text(
            EVENTS.replace("CustomerSignedUp", "Unrelated").replace("WelcomeSent", "Other")
            .replace("customer.signed_up", "x.y").replace("welcome.sent", "x.z")
        )  # fmt: skip
        spec = loads(topology(project, f"contracts: [{project}.other]"))
        workers = {"welcome": load_worker("welcome", spec.workers["welcome"])}
        # When
        problems = unlisted_contracts(spec, workers, register_contracts(spec, workers))
        # Then
        assert [str(p) for p in problems] == [
            f"workers.welcome: handles CustomerSignedUp ({project}.events.CustomerSignedUp), "
            f"which no module under `contracts:` exposes: add {project}.events to contracts",
            f"workers.welcome: emits WelcomeSent ({project}.events.WelcomeSent), "
            f"which no module under `contracts:` exposes: add {project}.events to contracts",
        ]


class TestWorkerModules:
    def test_a_worker_module_that_cannot_be_imported_names_the_module_and_the_path(
        self, project: str
    ) -> None:
        """One line: which worker, which module, why, and where fleet looked."""
        # Given
        spec = loads(topology(project).replace(f"{project}.welcome", f"{project}.missing"))
        # When
        with pytest.raises(LookupError) as caught:
            load_worker("welcome", spec.workers["welcome"])
        # Then
        message = str(caught.value)
        assert message.startswith(f"worker 'welcome': cannot import '{project}.missing'")
        assert f"searched {Path.cwd()}" in message
        assert "fix workers.welcome.module" in message


class TestWithoutADatabase:
    def test_ctx_db_without_a_database_says_how_to_give_one(self) -> None:
        """No AttributeError on None: the worker, and the option to pass."""
        # Given
        ctx = Context(
            worker="ledger", queue="q", event_type="E", message_id="m", correlation_id="c"
        )
        # When / Then
        with pytest.raises(DatabaseRequired, match="worker 'ledger' keeps its state in Post"):
            ctx.db.execute("SELECT 1")
        assert not ctx.db


class TestTwoProjects:
    def test_a_projects_own_order_placed_never_meets_the_reference_fleets(
        self, tmp_path: Path
    ) -> None:
        """A contract named like the sample's is the project's alone, in its own process."""
        # Given: a project with an OrderPlaced v1 of its own, and no reference import
        package = tmp_path / "bakery"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "events.py").write_text(
            "from contracts import Event\n\n"
            "class OrderPlaced(Event, frozen=True, kw_only=True):\n"
            '    __routing_key__ = "bread.ordered"\n'
            "    loaves: int\n"
        )
        (tmp_path / "fleet.yaml").write_text("contracts: [bakery.events]\n")
        # When
        listed = subprocess.run(
            [sys.executable, "-m", "workers.cli", "contracts", "list", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "PYTHON"))},
        )
        # Then
        assert listed.returncode == 0, listed.stderr
        [contract] = json.loads(listed.stdout)
        assert (contract["type"], contract["routing_key"]) == ("OrderPlaced", "bread.ordered")
        assert [f["name"] for f in contract["fields"]] == ["loaves"]
