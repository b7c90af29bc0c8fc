"""`fleet asyncapi`, run through click's test runner on the reference fleet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml
from click.testing import CliRunner, Result
from fulfilment import TOPOLOGY_FILE

import workers.cli.asyncapi  # noqa: F401  (adds `asyncapi` to `fleet`)
from workers.cli import EXIT_FAILURE, cli
from workers.cli.asyncapi import project_identity


@pytest.fixture(autouse=True)
def _in_the_reference_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in the reference fleet's directory, as its users do."""
    monkeypatch.chdir(TOPOLOGY_FILE.parent)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The `fleet` group configures structlog for the process; put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def fleet(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="fleet")


class TestFleetAsyncapi:
    def test_it_prints_the_reference_fleets_document_as_yaml(self) -> None:
        """By default the document goes to standard output, as YAML, named after the project."""
        result = fleet("asyncapi")
        assert result.exit_code == 0, result.output
        document = yaml.safe_load(result.stdout)
        assert document["asyncapi"] == "3.0.0"
        assert document["info"]["title"] == "fleet-fulfilment"
        assert "worker.inventory.receive" in document["operations"]
        assert "OrderPlaced.v1" in document["components"]["messages"]

    def test_json_to_a_file_says_what_it_wrote(self, tmp_path: Path) -> None:
        """--format json --output FILE writes JSON there and counts it on stderr."""
        target = tmp_path / "asyncapi.json"
        result = fleet("asyncapi", "--format", "json", "--output", str(target))
        assert result.exit_code == 0, result.output
        document = json.loads(target.read_text())
        assert result.stdout == ""
        assert result.stderr.startswith(f"wrote {target}: {len(document['channels'])} channels")

    def test_a_worker_that_cannot_be_imported_fails_in_one_line(self, tmp_path: Path) -> None:
        """A topology naming a missing module exits 1, saying which worker, no traceback."""
        topology = tmp_path / "fleet.yaml"
        topology.write_text(
            "exchanges: {shop: {}}\n"
            "queues: {greet: {bind: [{exchange: shop, routing_key: a.b}]}}\n"
            "workers: {greet: {module: no_such_module_for_asyncapi, queue: greet}}\n"
        )
        result = fleet("asyncapi", "--file", str(topology))
        assert result.exit_code == EXIT_FAILURE
        assert result.stderr.startswith("error: workers.greet.module: ")
        assert "Traceback" not in result.output


class TestProjectIdentity:
    def test_the_name_and_version_come_from_the_projects_pyproject(self) -> None:
        """Beside fleet.yaml, pyproject.toml's [project] names the document."""
        assert project_identity(str(TOPOLOGY_FILE)) == ("fleet-fulfilment", "0.1.0")

    def test_without_a_pyproject_the_folder_names_it(self, tmp_path: Path) -> None:
        """No pyproject.toml: the folder's name, version 0.0.0."""
        folder = tmp_path / "shop"
        folder.mkdir()
        assert project_identity(str(folder / "fleet.yaml")) == ("shop", "0.0.0")
