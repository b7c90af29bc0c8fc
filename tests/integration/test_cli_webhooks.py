"""`fleet webhooks run|list|deliveries` as a user runs them: real processes, a real
broker and PostgreSQL, the stand-in receiver on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fulfilment.standins import Standins, serve

from tests.conftest import Broker
from tests.integration.test_webhooks import CONFIRMED, NEW, SECRETS, TOPOLOGY, Hooks
from workers.testing import WebhooksProcess, eventually
from workers.webhooks import DeliveryRecord, PostgresRecords

ROOT = Path(__file__).resolve().parents[2]


def fleet_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "webhooks", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})},
    )


def attempt(message_id: str, number: int, status: int | None, outcome: str) -> DeliveryRecord:
    return DeliveryRecord(
        subscription="crm",
        message_id=message_id,
        event_type="OrderConfirmed",
        attempt=number,
        url="http://127.0.0.1:9/webhooks/crm",
        status=status,
        error=None if outcome == "delivered" else f"receiver answered {status}",
        latency_ms=3.25,
        outcome=outcome,  # type: ignore[arg-type]
        retry_queue="webhook.crm.retry.200ms" if outcome == "retry" else None,
    )


@pytest.fixture
def receiver() -> Iterator[Standins]:
    with serve(port=0, webhook_secrets=[NEW]) as standins:
        yield standins


class TestDeliveries:
    async def test_deliveries_are_shown_filtered_and_as_json(self, database: str) -> None:
        """A table of attempts, newest first; --failed, --message-id and --json."""
        # Given
        records = PostgresRecords(database)
        await records.start()
        for record in [
            attempt("m-1", 1, 500, "retry"),
            attempt("m-1", 2, 200, "delivered"),
            attempt("m-2", 1, 410, "dead"),
        ]:
            await records.add(record)
        await records.close()
        # When
        table = fleet_cli("deliveries", "--database-url", database)
        failed = fleet_cli("deliveries", "--failed", "--database-url", database)
        one = fleet_cli("deliveries", "--message-id", "m-1", "--json", "--database-url", database)
        print("\n" + table.stdout)
        # Then
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == [
            "AT", "SUBSCRIPTION", "MESSAGE", "TYPE", "#", "STATUS", "LATENCY", "OUTCOME", "ERROR",
        ]  # fmt: skip
        assert [line.split()[2:8] for line in lines[1:]] == [
            ["m-2", "OrderConfirmed", "1", "410", "3ms", "dead"],
            ["m-1", "OrderConfirmed", "2", "200", "3ms", "delivered"],
            ["m-1", "OrderConfirmed", "1", "500", "3ms", "retry"],
        ]
        assert "→ webhook.crm.retry.200ms" in lines[3]
        assert failed.returncode == 0, failed.stderr
        assert [line.split()[2] for line in failed.stdout.splitlines()[1:]] == ["m-2", "m-1"]
        rows = json.loads(one.stdout)
        assert [(r["attempt"], r["status"], r["outcome"]) for r in rows] == [
            (2, 200, "delivered"),
            (1, 500, "retry"),
        ]

    def test_without_a_database_it_says_so(self) -> None:
        result = fleet_cli("deliveries")
        assert result.returncode == 2
        assert "no database" in result.stderr

    def test_a_database_without_records_says_what_to_run(self, database: str) -> None:
        result = fleet_cli("deliveries", "--database-url", database)
        assert result.returncode == 1
        assert "fleet webhooks run" in result.stderr


class TestRun:
    async def test_run_delivers_until_sigterm_and_says_records_are_off(
        self, broker: Broker, database: str, receiver: Standins, tmp_path: Path
    ) -> None:
        """The dispatcher process delivers a signed event, then stops cleanly on SIGTERM."""
        # Given
        hooks = Hooks(broker, database, receiver, tmp_path)
        path = await hooks.provision()
        env = {**SECRETS, "FLEET_DATABASE_URL": ""}
        # When
        with WebhooksProcess(topology_file=path, url=broker.amqp_url, env=env) as process:
            hooks.publish("m-cli")
            await eventually(lambda: "m-cli" in receiver.webhooks.accepted, what="m-cli accepted")
            code = process.stop()
        # Then
        assert code == 0, "\n".join(process.output[-20:])
        assert receiver.webhooks.accepted["m-cli"].body == CONFIRMED
        [records] = process.events("webhooks.records")
        assert records["recorded"] == "off (no --database-url)"
        [delivered] = process.events("webhook.delivered")
        assert (delivered["message_id"], delivered["status"]) == ("m-cli", 200)

    def test_run_against_an_unprovisioned_broker_says_to_apply(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """No `fleet topology apply` yet: one line saying so, exit 1."""
        path = tmp_path / "topology.yaml"
        path.write_text(TOPOLOGY.format(url="http://127.0.0.1:9", delays="1s", allowance=""))
        result = fleet_cli("run", "--file", str(path), "--url", broker.amqp_url, env=SECRETS)
        assert result.returncode == 1
        assert (
            "error: queue 'webhook.crm' does not exist on this broker: "
            "run `fleet topology apply` first"
        ) in result.stderr

    def test_an_unknown_subscription_is_a_usage_error(self, tmp_path: Path) -> None:
        path = tmp_path / "topology.yaml"
        path.write_text(TOPOLOGY.format(url="http://127.0.0.1:9", delays="1s", allowance=""))
        result = fleet_cli("run", "nope", "--file", str(path), env=SECRETS)
        assert result.returncode == 2
        assert "no webhook subscription 'nope'" in result.stderr

    def test_missing_secrets_are_a_usage_error(self, tmp_path: Path) -> None:
        path = tmp_path / "topology.yaml"
        path.write_text(TOPOLOGY.format(url="http://127.0.0.1:9", delays="1s", allowance=""))
        result = fleet_cli("run", "--file", str(path))
        assert result.returncode == 2
        assert "webhooks.crm.secrets_env: none of the environment variables" in result.stderr

    def test_list_shows_each_subscription(self, tmp_path: Path) -> None:
        path = tmp_path / "topology.yaml"
        path.write_text(
            TOPOLOGY.format(
                url="http://127.0.0.1:9", delays="200ms, 500ms", allowance="    allow_private: true"
            )
        )
        result = fleet_cli("list", "--file", str(path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[1].split() == [
            "crm", "http://127.0.0.1:9/webhooks/crm", "OrderConfirmed", "200ms", "500ms", "private",
        ]  # fmt: skip


class TestTopologyCheck:
    def test_check_names_an_unknown_contract_and_warns_about_a_private_url(
        self, tmp_path: Path
    ) -> None:
        """`fleet topology check` resolves subscribed contracts and flags internal URLs."""
        # Given
        path = tmp_path / "topology.yaml"
        path.write_text(
            TOPOLOGY.format(url="http://10.0.0.5", delays="1s", allowance="").replace(
                "[OrderConfirmed]", "[OrderConfirmed, OrderShipped]"
            )
        )
        # When
        result = subprocess.run(
            [sys.executable, "-m", "workers.cli", "topology", "check", "--file", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )
        # Then
        assert result.returncode == 1
        assert "error: webhooks.crm.events[1]: unknown event type 'OrderShipped'" in result.stdout
        assert "warning: webhooks.crm.url: 10.0.0.5 is a private address" in result.stdout
