"""`fleet contracts list|schema`, run through click's test runner."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from click.testing import CliRunner, Result
from fulfilment import TOPOLOGY_FILE

import workers.cli.contracts  # noqa: F401  (adds the `contracts` group to `fleet`)
from topology import load
from workers.cli import EXIT_USAGE, cli
from workers.project import register_contracts

#: The reference saga's contracts; other tests may register more.
SAGA_TYPES = [
    "OrderCancelled",
    "OrderConfirmed",
    "OrderPlaced",
    "PaymentCaptured",
    "PaymentDeclined",
    "ShipmentScheduled",
    "StockRejected",
    "StockReleased",
    "StockReserved",
]


@pytest.fixture(autouse=True)
def _in_the_reference_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in the reference fleet's directory: its fleet.yaml names its contracts."""
    monkeypatch.chdir(TOPOLOGY_FILE.parent)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The `fleet` group configures structlog for the process; put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def registered_names() -> list[str]:
    """Wire names of the reference fleet's contracts, one per version, in listing order."""
    return [t.__wire_name__ for t in register_contracts(load(TOPOLOGY_FILE))]


def known_names() -> list[str]:
    """Distinct wire names in the default registry, sorted, as errors list them."""
    return sorted(set(registered_names()))


def fleet(*args: str) -> Result:
    """Run `fleet ARGS...` in process, logs as JSON so nothing depends on a terminal."""
    return CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="fleet")


class TestContractsList:
    """`fleet contracts list`: every registered contract."""

    def test_the_table_has_a_row_per_contract(self) -> None:
        """Wire name, version, routing key and fields, one contract a line."""
        # Given / When
        result = fleet("contracts", "list")
        # Then
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["TYPE", "VERSION", "ROUTING", "KEY", "FIELDS"]
        assert [line.split()[0] for line in lines[1:]] == registered_names()
        assert set(SAGA_TYPES) <= set(registered_names())
        placed = next(line for line in lines if line.startswith("OrderPlaced "))
        assert placed.split(maxsplit=3) == [
            "OrderPlaced",
            "1",
            "order.placed",
            "order_id, customer_id, lines, total_cents, currency?",
        ]

    def test_the_table_columns_line_up(self) -> None:
        """Every routing key starts in the same column."""
        # Given / When
        result = fleet("contracts", "list")
        # Then
        lines = result.stdout.splitlines()
        header_column = lines[0].index("ROUTING KEY")
        assert all(line[header_column - 2 : header_column] == "  " for line in lines[1:])
        assert all(line[header_column] != " " for line in lines[1:])

    def test_json_lists_every_contract_with_typed_fields(self) -> None:
        """`--json` prints one object per contract, for scripts."""
        # Given / When
        result = fleet("contracts", "list", "--json")
        # Then
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert set(SAGA_TYPES) <= {row["type"] for row in rows}
        placed = next(row for row in rows if row["type"] == "OrderPlaced" and row["version"] == 2)
        assert placed == {
            "type": "OrderPlaced",
            "version": 2,
            "routing_key": "order.placed",
            "description": "A customer placed an order; the saga's first event.",
            "fields": [
                {"name": "order_id", "type": "str", "required": True},
                {"name": "customer_id", "type": "str", "required": True},
                {"name": "lines", "type": "list[OrderLine]", "required": True},
                {"name": "total_cents", "type": "int", "required": True},
                {"name": "currency", "type": "str", "required": False},
                {"name": "source", "type": "str", "required": False},
            ],
        }
        assert {(r["type"], r["version"]) for r in rows if r["type"] == "OrderPlaced"} == {
            ("OrderPlaced", 1),
            ("OrderPlaced", 2),
        }
        rejected = next(row for row in rows if row["type"] == "StockRejected")
        assert rejected["fields"][-1] == {"name": "sku", "type": "str | None", "required": False}

    def test_the_list_is_the_projects_contracts_only(self) -> None:
        """The CLI shows exactly the modules under `contracts:`, nothing else in the process."""
        # Given / When
        result = fleet("contracts", "list", "--json")
        # Then
        rows = json.loads(result.stdout)
        assert [(r["type"], r["version"]) for r in rows] == [
            (t.__wire_name__, t.__version__) for t in register_contracts(load(TOPOLOGY_FILE))
        ]
        assert {r["type"] for r in rows} == set(SAGA_TYPES) | {
            "OrderDeadline",
            "PaymentRefunded",
            "ShipmentCancelled",
        }


class TestContractsSchema:
    """`fleet contracts schema NAME`: the JSON Schema of one contract."""

    def test_the_schema_is_pretty_json_with_fleets_metadata(self) -> None:
        """The output is indented JSON Schema carrying x-fleet."""
        # Given / When
        result = fleet("contracts", "schema", "OrderPlaced")
        # Then: the newest version, unless --version asks for another
        assert result.exit_code == 0, result.output
        schema = json.loads(result.stdout)
        assert schema["x-fleet"] == {
            "type": "OrderPlaced",
            "version": 2,
            "routing_key": "order.placed",
        }
        assert schema["$defs"]["OrderPlaced"]["required"] == [
            "order_id",
            "customer_id",
            "lines",
            "total_cents",
        ]
        assert result.stdout.startswith('{\n  "')

    def test_an_explicit_version_selects_that_version(self) -> None:
        """`--version 1` gives the version 1 schema."""
        # Given / When
        result = fleet("contracts", "schema", "PaymentDeclined", "--version", "1")
        # Then
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["x-fleet"]["version"] == 1

    def test_an_unknown_name_is_one_line_listing_the_known_names(self) -> None:
        """A typo exits 2 with one line on stderr that says what exists, no traceback."""
        # Given / When
        result = fleet("contracts", "schema", "Nope")
        # Then
        assert result.exit_code == EXIT_USAGE
        assert result.stdout == ""
        assert result.stderr == (
            f"error: unknown event type 'Nope' (known: {', '.join(known_names())})\n"
        )
        assert "Traceback" not in result.output

    def test_an_unknown_version_is_a_usage_error(self) -> None:
        """A known name with a version nobody registered exits 2 and names the version."""
        # Given / When
        result = fleet("contracts", "schema", "OrderPlaced", "--version", "7")
        # Then
        assert result.exit_code == EXIT_USAGE
        assert result.stderr.startswith("error: unknown event type 'OrderPlaced' version 7 (")
        assert result.stderr.count("\n") == 1

    def test_a_version_below_one_is_refused_by_click(self) -> None:
        """Versions count from 1."""
        # Given / When
        result = fleet("contracts", "schema", "OrderPlaced", "--version", "0")
        # Then
        assert result.exit_code == EXIT_USAGE
        assert "0 is not in the range x>=1" in result.stderr


class TestContractsHelp:
    """Every `--help` of the group ends with examples."""

    @pytest.mark.parametrize(
        "command", [["contracts"], ["contracts", "list"], ["contracts", "schema"]]
    )
    def test_help_ends_with_examples(self, command: list[str]) -> None:
        """The last lines of the help are runnable examples."""
        # Given / When
        result = fleet(*command, "--help")
        # Then
        assert result.exit_code == 0, result.output
        tail = result.stdout.rstrip().split("\n\n")[-1]
        assert tail.lstrip().startswith("Examples:")
        assert all(line.strip().startswith("fleet contracts") for line in tail.splitlines()[1:])
