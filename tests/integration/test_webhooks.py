"""Outbound webhooks end to end: a real broker, a real PostgreSQL, and the stand-in
receiver on loopback verifying every signature with the Standard Webhooks algorithm.

The dispatcher runs in process (`run_dispatchers`); retry tiers are 200 ms and
500 ms (2 s where Retry-After is tested), so a test takes about a second.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import fulfilment.contracts  # noqa: F401  (the subscription binds their routing keys)
import httpx
import pytest
from fulfilment.standins import Answer, Standins, serve

from tests.conftest import Broker
from tests.integration.conftest import PikaPublisher
from topology import Topology, load
from topology.apply import apply
from topology.nodes import with_credentials
from workers.runtime import headers as h
from workers.runtime.shutdown import Shutdown
from workers.standard_webhooks import verify
from workers.testing import collect, eventually, queue_depth
from workers.webhooks import DeliveryRecord, NoRecords, PostgresRecords, resolve, run_dispatchers
from workers.webhooks.records import Records, recent
from workers.webhooks.sender import post
from workers.webhooks.service import QueueMissing

NEW = "whsec_" + base64.b64encode(b"the new secret, 24 bytes").decode()
OLD = "whsec_" + base64.b64encode(b"the old secret, 24 bytes").decode()
SECRETS = {"TEST_HOOK_SECRET": NEW, "TEST_HOOK_SECRET_OLD": OLD}

TOPOLOGY = """
contracts: [fulfilment.contracts]
exchanges:
  orders: {{}}
webhooks:
  crm:
    url: {url}/webhooks/crm
    exchange: orders
    events: [OrderConfirmed]
    secrets_env: [TEST_HOOK_SECRET, TEST_HOOK_SECRET_OLD]
    timeout: 2s
    queue_type: classic
    retry: {{delays: [{delays}]}}
{allowance}
"""
CONFIRMED = {"order_id": "o-1", "shipment_id": "sh-1"}


class Hooks:
    """One test's receiver, topology and dispatcher."""

    def __init__(self, broker: Broker, database: str, receiver: Standins, tmp_path: Path):
        self.broker = broker
        self.database = database
        self.receiver = receiver
        self.tmp_path = tmp_path
        self.topology: Topology | None = None

    async def provision(
        self,
        *,
        delays: str = "200ms, 500ms",
        allowance: str = "    allow_hosts: [127.0.0.1]",
        extra: str = "",
        passwords: dict[str, str] | None = None,
    ) -> Path:
        path = self.tmp_path / "topology.yaml"
        path.write_text(
            TOPOLOGY.format(url=self.receiver.url, delays=delays, allowance=allowance) + extra
        )
        self.topology = load(path)
        await apply(
            self.topology,
            self.broker.amqp_url,
            management_url=self.broker.management_url,
            passwords=passwords,
        )
        return path

    @asynccontextmanager
    async def dispatching(
        self, records: Records | None = None, *, url: str | None = None
    ) -> AsyncIterator[None]:
        """Run the dispatcher (connected with `url`, default the test's) until the block exits."""
        assert self.topology is not None, "provision() first"
        shutdown, ready = Shutdown(), asyncio.Event()
        task = asyncio.create_task(
            run_dispatchers(
                resolve(self.topology, environ=SECRETS),
                url or self.broker.amqp_url,
                records=records or PostgresRecords(self.database),
                shutdown=shutdown,
                ready=ready,
            )
        )
        await asyncio.wait(
            [task, asyncio.ensure_future(ready.wait())],
            timeout=20,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task.done():
            task.result()  # raises what stopped it
        try:
            yield
        finally:
            shutdown.request()
            await asyncio.wait_for(task, 30)

    def publish(self, message_id: str, body: dict[str, Any] | None = None) -> None:
        publisher = PikaPublisher(self.broker.amqp_url)
        try:
            publisher.publish(
                "orders",
                "order.confirmed",
                body or CONFIRMED,
                type="OrderConfirmed",
                message_id=message_id,
                correlation_id="o-1",
            )
        finally:
            publisher.close()

    async def records(self, message_id: str | None = None) -> list[DeliveryRecord]:
        """Attempts, oldest first."""
        connection = await asyncpg.connect(self.database)
        try:
            rows = await recent(connection, message_id=message_id, limit=100)
        finally:
            await connection.close()
        return rows[::-1]

    async def wait_records(self, count: int) -> list[DeliveryRecord]:
        found: list[DeliveryRecord] = []

        async def enough() -> bool:
            nonlocal found
            try:
                found = await self.records()
            except LookupError:
                return False
            return len(found) >= count

        await eventually(enough, what=f"{count} delivery records")
        return found


@pytest.fixture
def receiver() -> Iterator[Standins]:
    """The stand-in webhook receiver on a free loopback port; it knows only the new secret."""
    with serve(port=0, webhook_secrets=[NEW]) as standins:
        yield standins


@pytest.fixture
def hooks(broker: Broker, database: str, receiver: Standins, tmp_path: Path) -> Hooks:
    return Hooks(broker, database, receiver, tmp_path)


class TestDelivery:
    async def test_a_receiver_failing_twice_gets_exactly_one_accepted_signed_delivery(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """500, 500, then 200: three attempts with one webhook-id, one accepted delivery."""
        # Given
        await hooks.provision()
        receiver.webhooks.script([500, 500])
        # When
        async with hooks.dispatching():
            hooks.publish("m-1")
            records = await hooks.wait_records(3)
        # Then: the receiver accepted it once, signed, with the body unchanged
        webhook = receiver.webhooks
        assert list(webhook.accepted) == ["m-1"]
        assert webhook.accepted["m-1"].body == CONFIRMED
        assert webhook.accepted["m-1"].event_type == "OrderConfirmed"
        assert [(r.webhook_id, r.verified, r.status) for r in webhook.received] == [
            ("m-1", True, 500),
            ("m-1", True, 500),
            ("m-1", True, 200),
        ]
        # and every attempt is recorded, the retries with the tier they waited in
        assert [(r.attempt, r.status, r.outcome, r.retry_queue) for r in records] == [
            (1, 500, "retry", "webhook.crm.retry.200ms"),
            (2, 500, "retry", "webhook.crm.retry.500ms"),
            (3, 200, "delivered", None),
        ]
        assert {(r.message_id, r.event_type, r.subscription) for r in records} == {
            ("m-1", "OrderConfirmed", "crm")
        }
        assert all(r.latency_ms > 0 for r in records)
        assert await queue_depth(hooks.broker.amqp_url, "webhook.crm.dead") == 0

    async def test_a_receiver_with_only_the_new_secret_verifies_during_rotation(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """Signed with the new and the old secret: either receiver verifies."""
        # Given
        await hooks.provision()
        # When
        async with hooks.dispatching():
            hooks.publish("m-rotate")
            await hooks.wait_records(1)
        # Then
        request = receiver.webhooks.accepted["m-rotate"]
        assert request.verified
        assert request.signature is not None
        assert len(request.signature.split(" ")) == 2
        # A receiver still on the old secret verifies the very same request.
        headers = {
            "webhook-id": "m-rotate",
            "webhook-timestamp": request.timestamp or "",
            "webhook-signature": request.signature,
        }
        assert verify(headers, request.raw, [OLD]) == "m-rotate"

    async def test_a_redelivered_message_keeps_its_webhook_id(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """A receiver that accepted but whose answer was lost sees the same id again."""
        # Given
        await hooks.provision()
        receiver.webhooks.script([503])
        # When
        async with hooks.dispatching():
            hooks.publish("m-dup")
            hooks.publish("m-dup")  # the publisher's own retry: same message id
            await hooks.wait_records(3)
        # Then
        assert {r.webhook_id for r in receiver.webhooks.received} == {"m-dup"}
        assert sum(r.duplicate for r in receiver.webhooks.received) == 1


class TestConcurrency:
    async def test_deliveries_run_concurrently_up_to_the_subscriptions_bound(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """Ten messages, concurrency 3: three POSTs wait at the receiver at once, never more."""
        # Given
        await hooks.provision(allowance="    allow_hosts: [127.0.0.1]\n    concurrency: 3")
        receiver.webhooks.hold()
        # When
        async with hooks.dispatching():
            for i in range(10):
                hooks.publish(f"m-{i}")
            await eventually(lambda: receiver.webhooks.in_flight == 3, what="three POSTs waiting")

            async def all_prefetched() -> bool:
                return await queue_depth(hooks.broker.amqp_url, "webhook.crm") == 0

            # Every message has reached the dispatcher: unbounded, all ten would POST now.
            await eventually(all_prefetched, what="webhook.crm emptied by the dispatcher")
            receiver.webhooks.release()
            await hooks.wait_records(10)
        # Then
        assert receiver.webhooks.max_in_flight == 3
        assert len(receiver.webhooks.accepted) == 10


class TestPinnedAddress:
    async def test_a_name_is_resolved_checked_and_connected_to_by_that_address(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """localhost is allowed by address only: the request goes to the checked
        127.0.0.1 and still names localhost in its Host header."""
        # Given
        if {info[4][0] for info in socket.getaddrinfo("localhost", 80)} != {"127.0.0.1"}:
            pytest.skip("localhost resolves to more than 127.0.0.1 here")
        port = receiver.url.rsplit(":", 1)[1]
        receiver.url = f"http://localhost:{port}"
        await hooks.provision(allowance="    allow_hosts: [127.0.0.0/8]")
        # When
        async with hooks.dispatching():
            hooks.publish("m-pinned")
            await hooks.wait_records(1)
        # Then
        request = receiver.webhooks.accepted["m-pinned"]
        assert request.host == f"localhost:{port}"
        assert request.verified

    async def test_the_request_goes_to_the_pinned_address_not_a_fresh_lookup(
        self, receiver: Standins
    ) -> None:
        """A name that does not resolve at all still reaches the pinned address, and
        the receiver sees the name: the connection never asked DNS again."""
        # Given
        port = receiver.url.rsplit(":", 1)[1]
        body = b'{"order_id": "o-1"}'
        # When
        async with httpx.AsyncClient() as client:
            attempt = await post(
                client,
                f"http://hooks.invalid:{port}/webhooks/crm",
                message_id="m-direct",
                body=body,
                secrets=(NEW,),
                seconds=5,
                connect_to="127.0.0.1",
            )
        # Then
        assert (attempt.status, attempt.error) == (200, None)
        assert receiver.webhooks.accepted["m-direct"].host == f"hooks.invalid:{port}"


class TestRetryAfter:
    async def test_retry_after_picks_the_tier_at_least_that_long(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """429 with Retry-After: 1 skips the 200ms and 500ms tiers for the 2s one."""
        # Given
        await hooks.provision(delays="200ms, 500ms, 2s")
        receiver.webhooks.script([Answer(429, {"Retry-After": "1"})])
        # When
        async with hooks.dispatching():
            hooks.publish("m-429")
            records = await hooks.wait_records(2)
        # Then
        assert [(r.status, r.outcome, r.retry_queue) for r in records] == [
            (429, "retry", "webhook.crm.retry.2s"),
            (200, "delivered", None),
        ]
        assert "Retry-After: 1" in (records[0].error or "")


class TestDeadLetters:
    async def test_after_the_last_attempt_the_message_is_dead_lettered_with_the_reason(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """Three 503s with two delay tiers: parked, reason retries-exhausted."""
        # Given
        await hooks.provision()
        receiver.webhooks.script([503, 503, 503])
        # When
        async with hooks.dispatching():
            hooks.publish("m-dead")
            records = await hooks.wait_records(3)
        # Then
        assert [(r.status, r.outcome) for r in records] == [
            (503, "retry"),
            (503, "retry"),
            (503, "dead"),
        ]
        assert receiver.webhooks.accepted == {}
        [parked] = await collect(hooks.broker.amqp_url, "webhook.crm.dead", 1, seconds=10)
        assert parked.message_id == "m-dead"
        assert parked.json() == CONFIRMED
        assert parked.headers[h.REASON] == "retries-exhausted"
        assert "receiver answered 503" in parked.headers[h.ERROR_MESSAGE]
        assert parked.headers[h.ATTEMPTS] == 3

    async def test_a_410_is_dead_lettered_at_once(self, hooks: Hooks, receiver: Standins) -> None:
        """A 4xx other than 408/429 can never succeed: no retry."""
        # Given
        await hooks.provision()
        receiver.webhooks.script([410])
        # When
        async with hooks.dispatching():
            hooks.publish("m-gone")
            records = await hooks.wait_records(1)
        # Then
        assert [(r.status, r.outcome) for r in records] == [(410, "dead")]
        [parked] = await collect(hooks.broker.amqp_url, "webhook.crm.dead", 1, seconds=10)
        assert parked.headers[h.REASON] == "permanent"
        assert "receiver answered 410" in parked.headers[h.ERROR_MESSAGE]
        assert len(receiver.webhooks.received) == 1

    async def test_a_dead_lettered_webhook_is_delivered_after_fleet_dlq_replay(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """Once the receiver is fixed, `fleet dlq replay webhook.crm` sends it again."""
        # Given: parked after a 410
        await hooks.provision()
        receiver.webhooks.script([410])
        async with hooks.dispatching():
            hooks.publish("m-replay")
            await hooks.wait_records(1)
            # When
            replay = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "workers.cli", "dlq", "replay", "webhook.crm", "--all",
                "--url", hooks.broker.amqp_url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await replay.communicate()
            records = await hooks.wait_records(2)
        # Then
        assert replay.returncode == 0, output.decode()
        assert [(r.attempt, r.status, r.outcome) for r in records] == [
            (1, 410, "dead"),
            (1, 200, "delivered"),  # attempts reset by the replay
        ]
        assert list(receiver.webhooks.accepted) == ["m-replay"]

    async def test_a_private_destination_without_the_allowance_is_refused(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """SSRF guard: 127.0.0.1 not allowed → dead-lettered, never requested."""
        # Given
        await hooks.provision(allowance="")
        # When
        async with hooks.dispatching():
            hooks.publish("m-ssrf")
            records = await hooks.wait_records(1)
        # Then
        assert receiver.webhooks.received == []
        assert [(r.status, r.outcome) for r in records] == [(None, "dead")]
        assert "SSRF guard" in (records[0].error or "")
        [parked] = await collect(hooks.broker.amqp_url, "webhook.crm.dead", 1, seconds=10)
        assert parked.headers[h.REASON] == "permanent"
        assert parked.headers[h.ERROR_TYPE] == "DestinationRefused"

    async def test_an_event_the_subscription_does_not_take_is_dead_lettered(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """Same routing key, another type: parked as unknown-type, not POSTed."""
        # Given
        await hooks.provision()
        publisher = PikaPublisher(hooks.broker.amqp_url)
        # When
        async with hooks.dispatching():
            publisher.publish("orders", "order.confirmed", CONFIRMED, type="Other", message_id="x")
            publisher.close()
            records = await hooks.wait_records(1)
        # Then
        assert [(r.outcome, r.event_type) for r in records] == [("dead", "Other")]
        assert receiver.webhooks.received == []

    async def test_hostile_headers_are_parked_with_their_reason_and_the_rest_delivered(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """A version that is no number, counters of the wrong type: nothing stays in flight."""
        # Given
        await hooks.provision()
        publisher = PikaPublisher(hooks.broker.amqp_url)
        wrong = {h.ATTEMPTS: "abc", h.RETRIES: [1], h.VERSION: 1}
        # When
        async with hooks.dispatching():
            for message_id, headers in [("bad-version", {h.VERSION: "abc"}), ("odd", wrong)]:
                publisher.publish(
                    "orders",
                    "order.confirmed",
                    CONFIRMED,
                    type="OrderConfirmed",
                    message_id=message_id,
                    headers=headers,
                )
            publisher.close()
            [parked] = await collect(hooks.broker.amqp_url, "webhook.crm.dead", 1)
            await eventually(lambda: "odd" in receiver.webhooks.accepted, what="'odd' accepted")
        # Then
        assert parked.message_id == "bad-version"
        assert parked.headers[h.REASON] == "invalid-version"
        assert await queue_depth(hooks.broker.amqp_url, "webhook.crm") == 0


class TestWithoutDatabase:
    async def test_the_dispatcher_delivers_without_records(
        self, hooks: Hooks, receiver: Standins
    ) -> None:
        """Records are off, deliveries are not."""
        # Given
        await hooks.provision()
        # When
        async with hooks.dispatching(records=NoRecords()):
            hooks.publish("m-nodb")
            await eventually(lambda: "m-nodb" in receiver.webhooks.accepted, what="m-nodb accepted")
        # Then
        assert receiver.webhooks.accepted["m-nodb"].verified
        with pytest.raises(LookupError):
            await hooks.records()


class TestStartup:
    async def test_the_dispatcher_refuses_a_topology_applied_before_failure_exchanges(
        self, hooks: Hooks, broker: Broker
    ) -> None:
        """Without `webhook.<name>.failures` it stops with the one line saying to run apply."""
        # Given
        await hooks.provision()
        with broker.api() as api:
            api.delete(
                f"/api/exchanges/{quote(broker.vhost, safe='')}/webhook.crm.failures"
            ).raise_for_status()
        # When
        with pytest.raises(QueueMissing) as refused:
            async with hooks.dispatching(records=NoRecords()):
                pass
        # Then
        assert str(refused.value) == (
            "exchange 'webhook.crm.failures' does not exist on this broker: "
            "run `fleet topology apply` first"
        )


class TestUnderItsOwnUser:
    async def test_the_dispatcher_delivers_retries_and_parks_as_its_own_user(
        self, hooks: Hooks, receiver: Standins, broker: Broker
    ) -> None:
        """With access.users it reads webhook.crm and writes webhook.crm.failures, no more:
        a 503 goes round the delay tier, then is delivered; a 410 is parked."""
        # Given the dispatcher's own user, made by apply
        prefix = f"t{uuid.uuid4().hex[:6]}-"
        user, password = f"{prefix}webhooks", uuid.uuid4().hex
        try:
            await hooks.provision(
                extra=f"access: {{users: true, prefix: {prefix}}}\n", passwords={user: password}
            )
            receiver.webhooks.script([503, 200, 410])
            url = with_credentials(broker.amqp_url, user, password)
            # When
            async with hooks.dispatching(records=NoRecords(), url=url):
                hooks.publish("m-retried")
                await eventually(
                    lambda: "m-retried" in receiver.webhooks.accepted, what="m-retried accepted"
                )
                hooks.publish("m-gone")
                [parked] = await collect(broker.amqp_url, "webhook.crm.dead", 1, seconds=10)
            # Then
            assert receiver.webhooks.accepted["m-retried"].verified
            assert parked.message_id == "m-gone"
            assert parked.headers[h.REASON] == "permanent"
            with broker.api() as api:
                granted = api.get(f"/api/users/{user}/permissions").json()
            assert [(p["configure"], p["write"], p["read"]) for p in granted] == [
                ("", r"^webhook\.crm\.failures$", r"^webhook\.crm$")
            ]
        finally:
            with broker.api() as api:
                api.delete(f"/api/users/{user}")
