"""`fleet saga show|list` against a real run of the reference fleet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fulfilment import TOPOLOGY_FILE
from fulfilment.workers import audit

from tests.integration.reference import WORKERS, Fleet, Order, fleet

__all__ = ["fleet"]  # the fixture, imported for pytest

APPLE = [{"sku": "apple", "qty": 2, "unit_price_cents": 120}]


def fleet_cli(*args: str, database: str | None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "workers.cli", "saga", *args]
    if database is not None:
        command += ["--database-url", database]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=TOPOLOGY_FILE.parent,  # its fleet.yaml declares the `order` saga
    )


class TestSagaCommands:
    async def test_show_and_list_follow_real_sagas(self, fleet, database: str) -> None:
        """One saga retried through the broker and confirmed, one declined, one out of
        stock: `show` draws each causation tree, `list` summarises and filters them."""
        # Given
        setup: Fleet = await fleet()
        setup.start(*WORKERS)
        orders = [
            Order("o-ok", "c-1-unstable", APPLE, "confirmed"),
            Order("o-declined", "c-2-decline", APPLE, "payment-declined"),
            Order("o-stockout", "c-3", [{"sku": "quince", "qty": 1, "unit_price_cents": 9}], None),
        ]
        setup.place(orders)
        await setup.wait_finished(orders, seconds=30)
        await setup.wait_quiet(20)
        summary = await setup.query(audit.summarize, [o.order_id for o in orders])
        assert summary.confirmed == 1

        # When
        confirmed = fleet_cli("show", "o-ok", database=database)
        declined = fleet_cli("show", "o-declined", database=database)
        cancelled = fleet_cli("list", "--status", "cancelled", "--since", "10m", database=database)
        listed = fleet_cli("list", "--json", database=database)
        print("\n" + confirmed.stdout + "\n" + declined.stdout + "\n" + cancelled.stdout)

        # Then
        assert confirmed.returncode == 0, confirmed.stderr
        lines = confirmed.stdout.splitlines()
        assert lines[0] == "saga o-ok"
        assert lines[3] == "OrderPlaced  o-ok-placed"
        tree = "\n".join(lines[3:])
        assert "payments  retried (Unavailable: payment gateway answered 503" in tree
        assert "payments  processed → PaymentCaptured" in tree
        assert "orders  processed → OrderConfirmed" in tree
        # an event hangs under the step that emitted it, one level deeper
        reserved = next(i for i, line in enumerate(lines) if "inventory  processed" in line)
        assert lines[reserved + 1].lstrip("│ ").startswith("└─ StockReserved") or lines[
            reserved + 1
        ].lstrip("│ ").startswith("├─ StockReserved")
        assert lines[reserved + 1].index("StockReserved") > lines[reserved].index("+")

        assert "payments  processed → PaymentDeclined" in declined.stdout
        assert "inventory  processed → StockReleased" in declined.stdout
        assert "orders  processed → OrderCancelled" in declined.stdout

        assert cancelled.returncode == 0, cancelled.stderr
        assert "o-declined" in cancelled.stdout
        assert "o-stockout" in cancelled.stdout
        assert "o-ok" not in cancelled.stdout
        rows = {row["correlation_id"]: row for row in json.loads(listed.stdout)}
        assert set(rows) == {"o-ok", "o-declined", "o-stockout"}
        assert rows["o-ok"]["retried"] == 2  # the gateway and the carrier, once each
        assert (rows["o-ok"]["saga"], rows["o-ok"]["status"]) == ("order", "confirmed")
        assert (rows["o-stockout"]["status"], rows["o-stockout"]["ending"]) == (
            "cancelled",
            "OrderCancelled",
        )
        assert all(row["ended"] is not None for row in rows.values())

    async def test_mistakes_are_one_line(self, database: str) -> None:
        # Given an empty database / When
        missing = fleet_cli("show", "o-1", database=None)
        empty = fleet_cli("show", "o-1", database=database)
        bad_since = fleet_cli("list", "--since", "soon", database=database)
        bad_status = fleet_cli("list", "--status", "shipped", database=database)
        # Then
        assert missing.returncode == 2
        assert (
            missing.stderr == "error: no database: pass --database-url or set FLEET_DATABASE_URL\n"
        )
        assert empty.returncode == 1
        assert empty.stderr.startswith("error: this database has no saga timeline")
        assert bad_since.returncode == 2
        assert "invalid duration 'soon'" in bad_since.stderr
        assert bad_status.returncode == 2
        assert bad_status.stderr == (
            "error: no saga ends with status 'shipped' "
            "(the topology's: cancelled, confirmed, pending)\n"
        )
