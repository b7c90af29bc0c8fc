"""Settings RabbitMQ versions treat differently: `topology check` warns, naming the versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from topology import check_references, loads
from topology.versions import Version, parse_version, version_problems
from workers.cli import EXIT_OK, EXIT_USAGE, cli

HEADER = """
exchanges: {orders: {}}
queues:
"""


def queue(settings: str, *, queue_type: str = "classic", name: str = "audit") -> str:
    """A file with one queue of `queue_type` holding `settings` (YAML lines, indented 4)."""
    return (
        HEADER
        + f"  {name}:\n    type: {queue_type}\n    bind: [{{exchange: orders}}]\n"
        + "".join(f"    {line}\n" for line in settings.strip().splitlines())
    )


def warnings(text: str, rabbitmq: str | None = None) -> list[str]:
    version = parse_version(rabbitmq) if rabbitmq else None
    problems = version_problems(loads(text), version)
    assert all(p.severity == "warning" for p in problems)
    return [str(p) for p in problems]


CONSUMED_WITH_LIMIT = (
    queue("delivery_limit: 5", queue_type="quorum", name="ledger")
    + "workers:\n  ledger: {module: shop.ledger, queue: ledger}\n"
)


class TestTransientQueues:
    def test_a_transient_classic_queue_is_flagged_from_4_0(self) -> None:
        """4.0 deprecates transient non-exclusive queues; 4.3 refuses them by default."""
        [problem] = warnings(queue("durable: false"))
        assert problem.startswith("warning: queues.audit.durable: a transient (non-durable)")
        assert "4.3 refuses them by default" in problem
        assert warnings(queue("durable: false"), "4.0") == [problem]

    def test_on_3_x_a_transient_classic_queue_is_fine(self) -> None:
        assert warnings(queue("durable: false"), "3.13") == []

    def test_a_durable_classic_queue_is_fine_everywhere(self) -> None:
        assert warnings(queue("durable: true")) == []


class TestQueueArguments:
    def test_x_queue_mode_is_flagged_from_3_12(self) -> None:
        """Classic queues v2 ignore it; 4.3 refuses the declaration."""
        [problem] = warnings(queue("arguments: {x-queue-mode: lazy}"), "4.0")
        assert problem.startswith("warning: queues.audit.arguments.x-queue-mode: has no effect")
        assert "4.3 refuses it" in problem
        assert warnings(queue("arguments: {x-queue-mode: lazy}"), "3.10") == []

    def test_classic_queue_storage_version_1_is_flagged_from_4_0(self) -> None:
        [problem] = warnings(queue("arguments: {x-queue-version: 1}"))
        assert "queues.audit.arguments.x-queue-version: classic queue storage v1" in problem
        assert warnings(queue("arguments: {x-queue-version: 1}"), "3.12") == []

    def test_classic_queue_storage_version_2_is_fine(self) -> None:
        assert warnings(queue("arguments: {x-queue-version: 2}")) == []

    def test_the_master_locator_is_flagged_from_4_0_with_its_replacement(self) -> None:
        [problem] = warnings(queue("arguments: {x-queue-master-locator: min-masters}"), "4.0")
        assert "deprecated in RabbitMQ 4.0: use x-queue-leader-locator" in problem
        assert warnings(queue("arguments: {x-queue-master-locator: min-masters}"), "3.10") == []

    def test_a_classic_queues_leader_locator_is_flagged_before_4_0(self) -> None:
        """3.x refuses it on a classic queue (tested on the broker in test_broker_versions)."""
        text = queue("arguments: {x-queue-leader-locator: balanced}")
        [problem] = warnings(text, "3.10")
        assert "classic queues accept it from RabbitMQ 4.0; 3.x refuses" in problem
        assert warnings(text, "4.0") == []

    def test_a_quorum_queues_leader_locator_is_fine_everywhere(self) -> None:
        text = queue("arguments: {x-queue-leader-locator: balanced}", queue_type="quorum")
        assert warnings(text, "3.10") == []

    def test_every_mirroring_argument_is_flagged_as_doing_nothing(self) -> None:
        """Mirroring was set by policy, never by these; 4.0 removed it altogether."""
        text = queue("arguments: {x-ha-policy: all, x-ha-nodes: [a, b]}")
        problems = warnings(text, "3.10")
        assert [p.split(":")[1].strip() for p in problems] == [
            "queues.audit.arguments.x-ha-nodes",
            "queues.audit.arguments.x-ha-policy",
        ]
        assert all("this does nothing; a quorum queue replicates" in p for p in problems)


class TestDeliveryLimit:
    def test_a_consumed_quorum_queues_explicit_limit_is_explained_for_4_3(self) -> None:
        """4.3 no longer counts basic.nack (nor a consumer timeout): where it is the
        crash bound, a worker without a database, that matters."""
        [problem] = warnings(CONSUMED_WITH_LIMIT, "4.3")
        assert problem.startswith("warning: queues.ledger.delivery_limit: bounds a crash loop")
        assert "only for workers without a database" in problem
        assert "not basic.nack nor a consumer timeout" in problem
        assert warnings(CONSUMED_WITH_LIMIT) == [problem]

    def test_up_to_4_2_the_limit_counts_as_it_always_did(self) -> None:
        assert warnings(CONSUMED_WITH_LIMIT, "4.2") == []
        assert warnings(CONSUMED_WITH_LIMIT, "3.10") == []

    def test_the_default_limit_and_unconsumed_queues_are_not_flagged(self) -> None:
        """Nobody chose the default; a queue no worker consumes crash-loops nothing."""
        assert warnings(queue("retry: {attempts: 1}", queue_type="quorum")) == []
        assert warnings(queue("delivery_limit: 5", queue_type="quorum")) == []


def route(max_body: int) -> str:
    """A file with one ingress route taking bodies up to `max_body` bytes."""
    return (
        HEADER
        + "  orders: {bind: [{exchange: orders}]}\ningress:\n  routes:\n"
        + f"    /orders: {{contract: OrderPlaced, exchange: orders, max_body: {max_body}}}\n"
    )


class TestIngressBodies:
    def test_a_body_limit_above_16_mib_is_flagged_from_4_0(self) -> None:
        """4.0 lowered the broker's max_message_size from 128 MiB to 16 MiB."""
        [problem] = warnings(route(32 * 1024 * 1024), "4.0")
        assert problem.startswith("warning: ingress.routes./orders.max_body: 33554432 bytes")
        assert warnings(route(32 * 1024 * 1024), "3.10") == []

    def test_16_mib_itself_is_fine(self) -> None:
        assert warnings(route(16 * 1024 * 1024)) == []


class TestVersions:
    @pytest.mark.parametrize(
        ("text", "version"),
        [("4.0", Version(4, 0)), ("3.10.8", Version(3, 10)), (" 4.3.0 ", Version(4, 3))],
    )
    def test_a_version_is_its_release_series(self, text: str, version: Version) -> None:
        assert parse_version(text) == version

    @pytest.mark.parametrize(
        ("text", "message"),
        [("4", "expected a RabbitMQ version like 4.0"), ("3.9", "3.10 and later, not 3.9")],
    )
    def test_a_version_fleet_cannot_use_is_refused(self, text: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_version(text)

    def test_check_references_includes_them(self) -> None:
        """The file's other checks and these come together (what `topology check` prints)."""
        problems = [str(p) for p in check_references(loads(queue("durable: false")))]
        assert any(p.startswith("warning: queues.audit.durable: a transient") for p in problems)


class TestCheckCommand:
    def test_the_version_given_selects_the_warnings(self, tmp_path: Path) -> None:
        """`--rabbitmq-version 3.10` drops what only matters on 4.x."""
        # Given
        path = tmp_path / "fleet.yaml"
        path.write_text(queue("durable: false\narguments: {x-queue-mode: lazy}"))
        # When
        every = CliRunner().invoke(cli, ["topology", "check", "--file", str(path)])
        on_3_10 = CliRunner().invoke(
            cli, ["topology", "check", "--file", str(path), "--rabbitmq-version", "3.10"]
        )
        # Then
        assert every.exit_code == on_3_10.exit_code == EXIT_OK
        assert "(2 warnings)" in every.output
        assert "queues.audit.durable" in every.output
        assert "queues.audit.arguments.x-queue-mode" in every.output
        assert "(0 warnings)" in on_3_10.output

    def test_a_version_that_is_not_one_is_a_usage_error(self, tmp_path: Path) -> None:
        path = tmp_path / "fleet.yaml"
        path.write_text(queue("durable: true"))
        result = CliRunner().invoke(
            cli, ["topology", "check", "--file", str(path), "--rabbitmq-version", "four"]
        )
        assert result.exit_code == EXIT_USAGE
        assert "expected a RabbitMQ version like 4.0 or 3.10.8, got 'four'" in result.output
