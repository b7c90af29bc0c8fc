"""`fleet dlq` against a real broker: list, show, replay by id, purge."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from tests.conftest import Broker
from tests.integration.conftest import PikaPublisher, order
from workers.cli import _register_commands, cli
from workers.runtime import headers as h
from workers.testing import collect, queue_depth

_register_commands()


def fleet(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--log-format", "json", *args])
    return result.exit_code, result.output


@pytest.fixture
async def parked(broker: Broker, echo_topology, pika_publisher: PikaPublisher) -> Broker:
    """Three messages parked in echo.dead by hand, as a worker would have parked them."""
    await echo_topology()
    for i in range(3):
        pika_publisher.publish(
            "",
            "echo.dead",
            order(f"o-{i}"),
            message_id=f"m-{i}",
            headers={
                "version": 1,
                h.REASON: "permanent",
                h.ATTEMPTS: 4,
                h.ERROR_MESSAGE: "card expired",
                h.WORKER: "echo",
            },
        )
    return broker


class TestDlqCli:
    async def test_list_shows_dead_and_retry_queues_with_depths(self, parked: Broker) -> None:
        code, output = await asyncio.to_thread(
            fleet,
            "dlq",
            "list",
            "--url",
            parked.amqp_url,
            "--management-url",
            parked.management_url,
        )
        assert code == 0
        assert "echo.dead" in output
        assert "echo.retry.1s" in output
        assert "3 dead-lettered, 0 waiting for a retry." in output

    async def test_show_prints_reasons_and_leaves_messages_in_place(self, parked: Broker) -> None:
        code, output = await asyncio.to_thread(
            fleet, "dlq", "show", "echo", "--url", parked.amqp_url,
            "--management-url", parked.management_url,
        )  # fmt: skip
        assert code == 0
        assert output.count("reason:   permanent") == 3
        assert "card expired" in output
        assert await queue_depth(parked.amqp_url, "echo.dead") == 3

    async def test_replay_by_id_moves_one_message_with_its_attempts_reset(
        self, parked: Broker
    ) -> None:
        code, output = await asyncio.to_thread(
            fleet, "dlq", "replay", "echo", "--id", "m-1", "--url", parked.amqp_url
        )
        assert code == 0, output
        assert "Replayed 1 message(s) from echo.dead to echo; 2 left." in output
        [back] = await collect(parked.amqp_url, "echo", 1, seconds=5)
        assert back.message_id == "m-1"
        assert h.ATTEMPTS not in back.headers
        assert h.REASON not in back.headers
        assert await queue_depth(parked.amqp_url, "echo.dead") == 2

    async def test_replay_of_an_unknown_id_is_a_usage_error(self, parked: Broker) -> None:
        code, output = await asyncio.to_thread(
            fleet, "dlq", "replay", "echo", "--id", "nope", "--url", parked.amqp_url
        )
        assert code == 2
        assert "no message with id 'nope'" in output
        assert await queue_depth(parked.amqp_url, "echo.dead") == 3

    async def test_purge_needs_confirmation_and_then_empties_the_queue(
        self, parked: Broker
    ) -> None:
        refused, _ = await asyncio.to_thread(
            fleet, "dlq", "purge", "echo", "--url", parked.amqp_url
        )
        assert refused == 2
        assert await queue_depth(parked.amqp_url, "echo.dead") == 3
        code, output = await asyncio.to_thread(
            fleet, "dlq", "purge", "echo", "--yes", "--url", parked.amqp_url
        )
        assert code == 0
        assert "Purged 3 message(s) from echo.dead." in output
        assert await queue_depth(parked.amqp_url, "echo.dead") == 0
