"""`fleet status` against a known broker state: the figures, and the exit code
that follows the dead-letter rule."""

from __future__ import annotations

import asyncio
import signal
import sys

from click.testing import CliRunner

from tests.conftest import Broker
from tests.integration.conftest import PikaPublisher, order
from workers.cli import _register_commands, cli
from workers.testing import collect

_register_commands()


def status(broker: Broker, path: str) -> tuple[int, dict[str, list[str]], str]:
    """Exit code, the table's rows by queue name, and the whole output."""
    result = CliRunner().invoke(
        cli,
        [
            "status",
            "--file",
            path,
            "--url",
            broker.amqp_url,
            "--management-url",
            broker.management_url,
        ],
    )
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    return result.exit_code, rows, result.output


class TestStatus:
    async def test_shows_depths_and_fails_while_dead_letters_are_parked(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """3 ready in echo and 2 parked in echo.dead: shown as such, exit 1; once the
        dead letters are taken away, exit 0."""
        # Given
        path, _ = await echo_topology()
        for i in range(3):
            pika_publisher.publish("orders", "order.placed", order(f"o-{i}"))
        for i in range(2):
            pika_publisher.publish("", "echo.dead", order(f"d-{i}"))
        # When
        code, rows, output = await asyncio.to_thread(status, broker, str(path))
        # Then
        assert code == 1, output
        assert rows["QUEUE"] == [
            "QUEUE", "KIND", "READY", "UNACKED", "CONSUMERS", "IN/s", "OUT/s", "RETRY", "DEAD",
        ]  # fmt: skip
        name, kind, ready, unacked, consumers, _, _, retry, dead = rows["echo"]
        assert (name, kind, ready, unacked, consumers) == ("echo", "work", "3", "0", "0")
        assert (retry, dead) == ("1s:0", "2")
        assert rows["answers"][2] == "0"
        assert rows["answers"][-1] == "0"
        assert "2 dead-lettered, 0 waiting for a retry." in output
        assert "fleet dlq show echo" in output

        # When the dead letters are dealt with
        assert len(await collect(broker.amqp_url, "echo.dead", count=2)) == 2
        code, rows, output = await asyncio.to_thread(status, broker, str(path))
        # Then
        assert code == 0, output
        assert rows["echo"][-1] == "0"
        assert "0 dead-lettered" in output

    async def test_a_topology_not_applied_fails(self, broker: Broker, tmp_path) -> None:
        """Managed queues missing from the broker are named, and the check fails."""
        path = tmp_path / "topology.yaml"
        path.write_text("queues:\n  lonely: {type: classic}\n")
        code, rows, output = await asyncio.to_thread(status, broker, str(path))
        assert code == 1
        assert rows["lonely"][2:7] == ["-"] * 5
        assert "not on the broker (lonely, lonely.retry.5s" in output

    async def test_watch_redraws_until_ctrl_c_and_exits_by_the_last_state(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """--watch keeps drawing; after Ctrl-C the exit code still follows the rule."""
        path, _ = await echo_topology()
        pika_publisher.publish("", "echo.dead", order("d-1"))
        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "status", "--watch", "--interval", "0.5",
            "--file", str(path), "--url", broker.amqp_url,
            "--management-url", broker.management_url,
            stdout=asyncio.subprocess.PIPE,
            # Ctrl-C must reach it even when the tests run as a background job,
            # whose children start with SIGINT ignored (Python then keeps it so).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        assert watch.stdout is not None
        drawn = 0
        async for line in watch.stdout:
            if line.startswith(b"1 dead-lettered"):
                drawn += 1
                if drawn == 2:
                    break
        watch.send_signal(signal.SIGINT)
        # Read on while it stops: a full pipe would block its last redraw.
        await asyncio.wait_for(watch.communicate(), 30)
        assert watch.returncode == 1
        assert drawn == 2
