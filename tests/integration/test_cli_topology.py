"""`fleet topology check|plan|apply|graph`, run through click's test runner.

check and graph import a tiny worker module written to tmp_path (on sys.path
for the test only); plan and apply run against the test's own vhost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

import workers.cli.topology
from tests.conftest import Broker
from topology.names import RECORD_QUEUE
from topology.plan import NO_CHANGES
from workers.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, cli
from workers.cli.topology import EXIT_PENDING

COURIER = """
from contracts import Event
from workers.context import Context
from workers.worker import Worker


class ParcelShipped(Event, frozen=True):
    __routing_key__ = "parcel.shipped"
    parcel_id: str


class ParcelDelivered(Event, frozen=True):
    __routing_key__ = "parcel.delivered"
    parcel_id: str


courier = Worker("courier")


@courier.handles(ParcelShipped)
async def deliver(event: ParcelShipped, ctx: Context) -> ParcelDelivered:
    return ParcelDelivered(parcel_id=event.parcel_id)
"""

PARCELS = """
exchanges:
  parcels: {type: topic}
queues:
  courier:
    type: %(queue_type)s
    bind: [{exchange: parcels, routing_key: %(courier_key)s}]
    retry: {delays: [5s]}
  tracking:
    type: classic
    bind: [{exchange: parcels, routing_key: parcel.delivered}]
workers:
  courier: {module: %(module)s, queue: courier, publish_to: parcels}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The `fleet` group configures structlog for the process; put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def courier_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A worker module (courier: ParcelShipped → ParcelDelivered) under a fresh name."""
    name = f"courier_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(COURIER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def parcels_file(
    tmp_path: Path,
    module: str = "no_such_module",
    *,
    queue_type: str = "quorum",
    courier_key: str = "parcel.shipped",
) -> str:
    """Write the parcels topology to tmp_path and return its path."""
    path = tmp_path / f"parcels-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        PARCELS % {"module": module, "queue_type": queue_type, "courier_key": courier_key}
    )
    return str(path)


def fleet(*args: str, input: str | None = None) -> Result:
    """Run `fleet ARGS...` in process, logs as JSON so nothing depends on a terminal."""
    return CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="fleet", input=input)


def on(broker: Broker) -> list[str]:
    """--url and --management-url of the test's vhost."""
    return ["--url", broker.amqp_url, "--management-url", broker.management_url]


def apply_file(broker: Broker, path: str) -> None:
    """Apply a topology file to the test's vhost; a Given step, so it must succeed."""
    result = fleet("topology", "apply", "--file", path, *on(broker))
    assert result.exit_code == EXIT_OK, result.output


def queue_type(broker: Broker, name: str) -> str:
    """The type of one queue of the test's vhost, from the management API."""
    return str(broker.queue(name)["type"])


class TestCheck:
    """`fleet topology check`: the file against the handlers' code."""

    def test_a_file_that_matches_its_workers_passes(
        self, tmp_path: Path, courier_module: str
    ) -> None:
        """Every handled event is routed and every emitted one has a queue: exit 0."""
        # Given
        path = parcels_file(tmp_path, courier_module)
        # When
        result = fleet("topology", "check", "--file", path)
        # Then
        assert result.exit_code == EXIT_OK, result.output
        assert result.output == (f"OK: {path} and the code of its 1 worker agree (0 warnings).\n")

    def test_a_handled_event_no_binding_routes_is_an_error(
        self, tmp_path: Path, courier_module: str
    ) -> None:
        """The courier handles parcel.shipped, but its queue is bound to parcel.lost: exit 1."""
        # Given
        path = parcels_file(tmp_path, courier_module, courier_key="parcel.lost")
        # When
        result = fleet("topology", "check", "--file", path)
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert (
            "error: workers.courier: handles ParcelShipped (parcel.shipped) but no binding of "
            "queue 'courier' routes it" in result.output
        )
        assert result.output.endswith(f"{path}: 1 error, 0 warnings.\n")

    def test_a_worker_module_that_cannot_be_imported_is_a_problem_at_its_path(
        self, tmp_path: Path
    ) -> None:
        """The module the file names does not exist: reported at workers.NAME.module, exit 1."""
        # Given
        path = parcels_file(tmp_path, "no_such_module")
        # When
        result = fleet("topology", "check", "--file", path)
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output.startswith(
            "error: workers.courier.module: worker 'courier': cannot import 'no_such_module'"
        )

    def test_a_module_that_raises_on_import_is_a_problem_not_a_traceback(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Whatever the user's module raises is reported as a finding."""
        # Given
        name = f"broken_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text("raise RuntimeError('no database URL')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        path = parcels_file(tmp_path, name)
        # When
        result = fleet("topology", "check", "--file", path)
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert (
            f"error: workers.courier.module: importing '{name}' failed: "
            "RuntimeError: no database URL" in result.output
        )
        assert "Traceback" not in result.output

    def test_an_invalid_file_is_a_usage_error(self, tmp_path: Path) -> None:
        """A file with errors of its own exits 2 with each problem, before importing any code."""
        # Given
        path = tmp_path / "bad.yaml"
        path.write_text("queues: {q: {bind: [{exchange: nowhere}]}}\n")
        # When
        result = fleet("topology", "check", "--file", str(path))
        # Then
        assert result.exit_code == EXIT_USAGE
        assert "queues.q.bind[0].exchange: unknown exchange 'nowhere'" in result.output
        assert "Traceback" not in result.output


class TestPlan:
    """`fleet topology plan`: what apply would do, with an exit code scripts can test."""

    def test_pending_changes_exit_3(self, broker: Broker, tmp_path: Path) -> None:
        """A fresh vhost: every object is listed as a create."""
        # Given
        path = parcels_file(tmp_path)
        # When
        result = fleet("topology", "plan", "--file", path, *on(broker))
        # Then
        assert result.exit_code == EXIT_PENDING, result.output
        lines = result.output.splitlines()
        assert lines[0] == "+ exchange courier.failures (direct)"
        assert lines[1] == "+ exchange parcels (topic)"
        assert "+ queue courier (quorum)" in lines
        assert "+ binding parcels → courier [parcel.shipped]" in lines
        assert lines[-1] == "Plan: 21 to create."

    def test_a_broker_that_matches_exits_0(self, broker: Broker, tmp_path: Path) -> None:
        """After apply, plan has nothing to say but that."""
        # Given
        path = parcels_file(tmp_path)
        apply_file(broker, path)
        # When
        result = fleet("topology", "plan", "--file", path, *on(broker))
        # Then
        assert result.exit_code == EXIT_OK
        assert result.output == NO_CHANGES + "\n"

    def test_a_change_that_cannot_be_made_in_place_says_it_needs_recreate(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """A queue's type change is shown with its differences and the way to make it."""
        # Given
        apply_file(broker, parcels_file(tmp_path, queue_type="classic"))
        # When
        result = fleet("topology", "plan", "--file", parcels_file(tmp_path), *on(broker))
        # Then
        assert result.exit_code == EXIT_PENDING
        assert "~ queue courier (quorum): needs --recreate\n    type: classic → quorum\n" in (
            result.output
        )

    def test_an_unreachable_management_api_is_one_line_and_exit_1(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """No traceback: the line says what to run."""
        # Given
        path = parcels_file(tmp_path)
        # When
        result = fleet(
            "topology", "plan", "--file", path, "--url", broker.amqp_url,
            "--management-url", "http://127.0.0.1:1",
        )  # fmt: skip
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output == (
            "error: cannot reach the RabbitMQ management API at http://127.0.0.1:1: "
            "connection refused (enable it: rabbitmq-plugins enable rabbitmq_management)\n"
        )

    def test_the_help_documents_exit_code_3_and_ends_with_examples(self) -> None:
        """Scripts need to know what 3 means; every --help ends with examples."""
        # Given / When
        result = fleet("topology", "plan", "--help")
        # Then
        assert "3  changes pending" in result.output
        assert result.output.rstrip().splitlines()[-4].strip() == "Examples:"


class TestApply:
    """`fleet topology apply`: each action as it happens, then a summary."""

    def test_apply_prints_each_action_and_a_summary(self, broker: Broker, tmp_path: Path) -> None:
        """Every declaration is a line; the last line counts them."""
        # Given
        path = parcels_file(tmp_path)
        # When
        result = fleet("topology", "apply", "--file", path, *on(broker))
        # Then
        assert result.exit_code == EXIT_OK, result.output
        lines = result.output.splitlines()
        assert lines[:2] == ["+ exchange courier.failures (direct)", "+ exchange parcels (topic)"]
        assert lines[-1] == "Applied: 21 created."
        assert len(lines) == 22
        assert queue_type(broker, "courier") == "quorum"
        assert broker.queue(RECORD_QUEUE)["arguments"] == {
            "x-max-length": 1,
            "x-queue-type": "classic",
        }

    def test_a_second_apply_reports_no_changes(self, broker: Broker, tmp_path: Path) -> None:
        """apply is idempotent."""
        # Given
        path = parcels_file(tmp_path)
        apply_file(broker, path)
        # When
        result = fleet("topology", "apply", "--file", path, *on(broker))
        # Then
        assert result.exit_code == EXIT_OK
        assert result.output == NO_CHANGES + "\n"

    def test_a_type_change_is_refused_without_recreate(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """One error line naming the queue and the way out; the queue is untouched."""
        # Given
        apply_file(broker, parcels_file(tmp_path, queue_type="classic"))
        # When
        result = fleet("topology", "apply", "--file", parcels_file(tmp_path), *on(broker))
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output.startswith("error: 3 changes cannot be made in place; rerun with")
        assert "queue 'courier': type classic → quorum, " in result.output
        assert queue_type(broker, "courier") == "classic"

    def test_recreate_with_yes_replaces_the_queue(self, broker: Broker, tmp_path: Path) -> None:
        """--recreate --yes deletes and declares again without asking."""
        # Given
        apply_file(broker, parcels_file(tmp_path, queue_type="classic"))
        # When
        result = fleet(
            "topology", "apply", "--file", parcels_file(tmp_path), "--recreate", "--yes",
            *on(broker),
        )  # fmt: skip
        # Then
        assert result.exit_code == EXIT_OK, result.output
        assert "~ queue courier (quorum) (recreated)" in result.output.splitlines()
        assert result.output.endswith("Applied: 3 changed.\n")
        assert queue_type(broker, "courier") == "quorum"

    def test_recreate_on_a_terminal_asks_first_and_no_changes_nothing(
        self, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Answering no leaves the queue and its messages where they are."""
        # Given
        apply_file(broker, parcels_file(tmp_path, queue_type="classic"))
        monkeypatch.setattr(workers.cli.topology, "_interactive", lambda: True)
        # When
        result = fleet(
            "topology", "apply", "--file", parcels_file(tmp_path), "--recreate", *on(broker),
            input="n\n",
        )  # fmt: skip
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert "Delete 3 queues and the messages in them? [y/N]: n" in result.output
        assert result.output.endswith("error: aborted: nothing was changed\n")
        assert queue_type(broker, "courier") == "classic"

    def test_an_unreachable_broker_is_one_line_and_exit_1(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """The management API answers, AMQP does not."""
        # Given
        url = broker.amqp_url_on_port(1)
        # When
        result = fleet(
            "topology", "apply", "--file", parcels_file(tmp_path), "--url", url,
            "--management-url", broker.management_url,
        )  # fmt: skip
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output.startswith("error: cannot reach RabbitMQ at 127.0.0.1:1: connection")
        assert len(result.output.splitlines()) == 1


class TestGraph:
    """`fleet topology graph`: Mermaid on stdout."""

    def test_the_graph_includes_the_events_the_code_emits(
        self, tmp_path: Path, courier_module: str
    ) -> None:
        """The courier's ParcelDelivered goes back to the parcels exchange."""
        # Given
        path = parcels_file(tmp_path, courier_module)
        # When
        result = fleet("topology", "graph", "--file", path)
        # Then
        assert result.exit_code == EXIT_OK
        lines = result.output.splitlines()
        assert lines[0] == "flowchart LR"
        assert '    ev_courier_ParcelDelivered -->|"parcel.delivered"| ex_parcels' in lines

    def test_a_module_that_cannot_be_imported_is_drawn_without_its_events(
        self, tmp_path: Path
    ) -> None:
        """A warning on stderr, and a dashed arrow to the exchange the worker publishes to."""
        # Given
        path = parcels_file(tmp_path, "no_such_module")
        # When
        result = fleet("topology", "graph", "--file", path)
        # Then
        assert result.exit_code == EXIT_OK
        assert "    w_courier -.-> ex_parcels" in result.stdout.splitlines()
        assert result.stderr.startswith("warning: workers.courier.module: worker 'courier'")
