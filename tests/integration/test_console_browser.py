"""The console in a real browser (Playwright + Debian's chromium) against the reference
fleet running as real processes: what an operator sees and does.

Screenshots of every page land in tests/artifacts/screenshots/ (CI keeps the folder
as an artefact); docs/screenshots/ holds the copy the manual shows, refreshed by a
run with FLEET_UPDATE_DOCS_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from fulfilment import TOPOLOGY_FILE

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from tests.integration.reference import Fleet, fleet
from topology import load
from workers.console.app import Settings, make_app
from workers.console.security import Access
from workers.loader import import_contracts
from workers.runtime import headers as h
from workers.testing import eventually

playwright = pytest.importorskip("playwright.async_api")

__all__ = ["fleet"]  # the fixture, imported for pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "tests" / "artifacts" / "screenshots"
DOCS_SHOT = ROOT / "docs" / "screenshots"
TOKEN = "browser-test-token-0123456789"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


async def serve(settings: Settings) -> TestServer:
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium (Debian's; Playwright never downloads one here)."""
    async with playwright.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def processed(database: str, message_id: str, worker: str) -> bool:
    """Whether `worker` recorded `message_id` as processed in the saga timeline."""
    db = await asyncpg.connect(database)
    try:
        found = await db.fetchval(
            "SELECT 1 FROM fleet_events WHERE message_id = $1 AND worker = $2 "
            "AND outcome = 'processed'",
            message_id,
            worker,
        )
        return bool(found)
    finally:
        await db.close()


def order_body(order_id: str, customer: str = "c-browser") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "total_cents": 240,
        "lines": [{"sku": "apple", "qty": 2, "unit_price_cents": 120}],
    }


class TestConsoleInABrowser:
    async def test_an_operator_sees_failures_replays_them_and_follows_a_saga(
        self, fleet: Callable[..., Any], broker: Broker, browser: Any
    ) -> None:
        """Overview, failures (group replay, edit and replay), a flaky saga, the topology."""
        # Given the reference fleet running, and its console
        setup: Fleet = await fleet()
        setup.start("inventory", "payments", "shipping", "orders")
        topology = load(setup.path)
        import_contracts(topology)
        server = await serve(
            Settings(
                topology=topology,
                topology_file=str(setup.path),
                amqp_url=broker.amqp_url,
                management_url=broker.management_url,
                database_url=setup.database,
                audit_file=setup.path.parent / "audit.jsonl",
                max_age=0.5,
                refresh_seconds=0.5,
            )
        )
        try:
            page = await (
                await browser.new_context(viewport={"width": 1400, "height": 900})
            ).new_page()
            await page.goto(str(server.make_url("/")))
            dead = page.locator('[data-dead="inventory"]')
            assert await dead.inner_text() == "0"

            # When a poison message arrives, the overview's dead-letter count rises by itself
            publisher = PikaPublisher(broker.amqp_url)
            try:
                publisher.publish("orders", "order.placed", '{"order_id": "o-poison", "lines": [',
                                  message_id="poison-1", correlation_id="o-poison")  # fmt: skip
                # And a valid order parked after its retries ran out (the gateway was down)
                publisher.publish(
                    "", "inventory.dead", order_body("o-replay"), message_id="replay-1",
                    correlation_id="o-replay",
                    headers={"version": 1, h.REASON: "retries-exhausted",
                             h.ERROR_TYPE: "Unavailable", h.ATTEMPTS: 6, h.WORKER: "inventory",
                             h.ERROR_MESSAGE: "stock service answered 503"},
                )  # fmt: skip
            finally:
                publisher.close()
            await page.wait_for_function(
                "() => document.querySelector('[data-dead=\"inventory\"]').innerText === '2'",
                timeout=20_000,
            )
            assert "dead" in (await page.locator("tr", has=dead).get_attribute("class") or "")
            await shoot(page, "overview")

            # Then the failures page groups them; the operator replays the 503 group
            await page.goto(str(server.make_url("/failures?queue=inventory.dead")))
            group = page.locator("section.group", has_text="retries-exhausted")
            await group.locator("details").first.evaluate("d => d.open = true")
            await shoot(page, "failures")
            await group.get_by_role("button", name="Replay the group").click()
            await page.wait_for_selector("#dry-run")
            assert "would be published to queue 'inventory'" in await page.inner_text("#dry-run")
            await shoot(page, "replay-dry-run")
            await page.click("#confirm")
            assert "Replayed 1 message(s)" in await page.inner_text("#done")
            await eventually(lambda: processed(setup.database, "replay-1", "inventory"),
                             what="the replayed order processed", timeout=30)  # fmt: skip

            # And edits the poison message's body, which is checked, then replayed
            poison = page.locator("section.group", has_text="InvalidPayload")
            await poison.get_by_role("link", name="edit and replay").first.click()
            await page.fill("#body", '{"order_id": "o-poison"}')
            await page.click("#check")
            assert "not sent" in await page.inner_text("#invalid")
            await page.fill("#body", json.dumps(order_body("o-poison")))
            await page.click("#check")
            await page.click("#confirm")
            assert "Replayed 1 edited message(s)" in await page.inner_text("#done")
            await eventually(lambda: processed(setup.database, "poison-1", "inventory"),
                             what="the edited order processed", timeout=30)  # fmt: skip
            await shoot(page, "failures-after")

            # When a payment is flaky (the gateway answers 503 four times: in-process
            # retries give up, a broker-delayed retry succeeds), the diagram marks the retry
            publisher = PikaPublisher(broker.amqp_url)
            try:
                flaky = order_body("o-flaky", "c-1-unstable")
                publisher.publish(
                    "orders", "order.placed", flaky, message_id="o-flaky-placed",
                    correlation_id="o-flaky",
                )  # fmt: skip
            finally:
                publisher.close()
            await eventually(lambda: processed(setup.database, "o-flaky-placed", "orders"),
                             what="o-flaky recorded", timeout=30)  # fmt: skip

            async def retried_and_captured() -> bool:
                await page.goto(str(server.make_url("/sagas/o-flaky")))
                tree = await page.inner_text("#tree")
                return "payments  retried" in tree and "PaymentCaptured" in tree

            await eventually(retried_and_captured, what="the flaky payment retried", timeout=30)
            retried = page.locator("svg.saga g.step.retried")
            assert await retried.count() >= 1
            assert "payments" in (await page.text_content("svg.saga") or "")
            await shoot(page, "saga")

            await page.goto(str(server.make_url("/sagas")))
            assert "o-flaky" in await page.inner_text("main")
            await shoot(page, "sagas")
            await page.goto(str(server.make_url("/topology")))
            assert await page.locator("svg.topology g.node.w").count() == len(topology.workers)
            assert await page.locator("#plan-summary").count() == 1
            await shoot(page, "topology")
            await page.goto(str(server.make_url("/audit")))
            audit = await page.inner_text("main")
            assert "replay-edited" in audit
            assert "local:" in audit
            await shoot(page, "audit")
        finally:
            await server.close()
        if os.environ.get("FLEET_UPDATE_DOCS_SCREENSHOTS"):  # a run that refreshes the manual's
            DOCS_SHOT.mkdir(parents=True, exist_ok=True)
            shutil.copy(SHOTS / "failures.png", DOCS_SHOT / "console-failures.png")

    async def test_a_request_without_the_token_is_refused(
        self, broker: Broker, browser: Any, tmp_path: Path
    ) -> None:
        """With a token set, the browser gets the sign-in page (401) until it gives it."""
        topology = load(TOPOLOGY_FILE)
        server = await serve(
            Settings(
                topology=topology,
                topology_file=str(TOPOLOGY_FILE),
                amqp_url=broker.amqp_url,
                management_url=broker.management_url,
                audit_file=tmp_path / "audit.jsonl",
                access=Access(TOKEN),
            )
        )
        try:
            page = await browser.new_page()
            response = await page.goto(str(server.make_url("/failures")))
            assert response.status == 401
            assert await page.locator("input[name=token]").count() == 1
            await shoot(page, "sign-in")
            await page.fill("input[name=who]", "olga")
            await page.fill("input[name=token]", "not-the-token-at-all")
            await page.click("button")
            assert "wrong token" in await page.inner_text("main")
            await page.fill("input[name=who]", "olga")
            await page.fill("input[name=token]", TOKEN)
            await page.click("button")
            assert "olga" in await page.inner_text("header")
            assert await page.locator("#totals").count() == 1
        finally:
            await server.close()
