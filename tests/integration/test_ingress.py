"""The HTTP ingress against a real broker: a real HTTP client posts, the event lands in a queue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import fulfilment.contracts  # noqa: F401  (registers OrderPlaced)
import httpx
import pytest
from aiohttp.test_utils import TestServer

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import order
from topology import loads
from topology.apply import apply
from workers.ingress.auth import sign_standard_webhooks, sign_stripe
from workers.ingress.broker import BrokerLink
from workers.ingress.routes import resolve_routes
from workers.ingress.serve import assemble
from workers.testing import collect, queue_depth, rabbitmqctl

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOPOLOGY = """
contracts: [fulfilment.contracts]
exchanges:
  orders: {}
queues:
  seen:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders, max_body: 4096}
    /plain: {contract: OrderPlaced, exchange: orders}
    /nowhere: {contract: OrderPlaced, exchange: orders, routing_key: order.lost}
    /secure:
      contract: OrderPlaced
      exchange: orders
      auth: {type: bearer, secrets_env: [INGRESS_TOKEN_NEW, INGRESS_TOKEN]}
    /hooks:
      contract: OrderPlaced
      exchange: orders
      auth: {type: standard-webhooks, secrets_env: [INGRESS_HOOK_SECRET]}
    /github:
      contract: OrderPlaced
      exchange: orders
      auth: {type: github, secrets_env: [INGRESS_GITHUB_SECRET]}
    /github-brief:
      contract: OrderPlaced
      exchange: orders
      auth: {type: github, secrets_env: [INGRESS_GITHUB_SECRET]}
      dedupe_window: 1s
    /stripe:
      contract: OrderPlaced
      exchange: orders
      auth: {type: stripe, secrets_env: [INGRESS_STRIPE_SECRET]}
      unknown_fields: ignore  # a Stripe event carries more than the contract
    /loopback: {contract: OrderPlaced, exchange: orders, allow_ips: [127.0.0.0/8, "::1"]}
    /office: {contract: OrderPlaced, exchange: orders, allow_ips: [10.20.0.0/16]}
"""
ENV = {
    "INGRESS_TOKEN": "s3cret",
    "INGRESS_HOOK_SECRET": SECRET,
    "INGRESS_GITHUB_SECRET": "gh",
    "INGRESS_STRIPE_SECRET": "whsec_stripe_test",
}


@dataclass
class Ingress:
    http: httpx.AsyncClient
    link: BrokerLink


async def start(url: str) -> tuple[Ingress, TestServer, asyncio.Task[None], asyncio.Event]:
    topology = loads(TOPOLOGY)
    app, link = assemble(resolve_routes(topology, default_registry, ENV), url, max_backoff=0.2)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    server = TestServer(app)
    await server.start_server()
    http = httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10)
    return Ingress(http, link), server, keeper, stop


@pytest.fixture
async def ingress(broker: Broker) -> AsyncIterator[Ingress]:
    """The ingress on a free loopback port, its topology applied to the test's vhost."""
    await apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url)
    running, server, keeper, stop = await start(broker.amqp_url)
    await asyncio.wait_for(running.link.connected.wait(), 10)
    yield running
    await running.http.aclose()
    await server.close()
    stop.set()
    await keeper


async def depth(url: str) -> int:
    """Messages ready in the routes' queue, `seen`, now."""
    return await queue_depth(url, "seen")


class TestAccepted:
    """A valid post is confirmed by the broker, then answered 202."""

    async def test_a_valid_post_is_published_in_the_wire_format(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        # Given
        body = order("o-1")
        # When
        response = await ingress.http.post(
            "/orders", json=body, headers={"X-Correlation-Id": "saga-7"}
        )
        # Then: 202 only after the confirm, so the message is already queued
        assert response.status_code == 202, response.text
        message_id = response.json()["message_id"]
        assert await depth(broker.amqp_url) == 1
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert received.type == "OrderPlaced"
        assert received.message_id == message_id
        assert received.correlation_id == "saga-7"
        assert received.headers["version"] == 1
        assert received.routing_key == "order.placed"
        assert received.json() == {**body, "currency": "EUR"}  # the contract's default

    async def test_the_idempotency_key_becomes_the_message_id(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        # When
        response = await ingress.http.post(
            "/orders", json=order("o-2"), headers={"Idempotency-Key": "order-o-2"}
        )
        # Then
        assert response.status_code == 202
        assert response.json() == {"message_id": "order-o-2"}
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert (received.message_id, received.correlation_id) == ("order-o-2", "order-o-2")

    async def test_a_signed_webhook_uses_its_webhook_id(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        # Given
        body = json.dumps(order("o-3")).encode()
        now = int(time.time())
        signature = sign_standard_webhooks(SECRET, "msg_1", now, body)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": signature,
        }
        # When
        response = await ingress.http.post("/hooks", content=body, headers=headers)
        # Then
        assert response.status_code == 202, response.text
        assert response.json() == {"message_id": "msg_1"}

    async def test_a_github_delivery_is_verified_and_identified_by_what_is_signed(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """X-Hub-Signature-256 checks out; the message id is a digest of the signature and
        body (not the unsigned X-GitHub-Delivery); GitHub's redelivery is answered."""
        body = json.dumps(order("o-gh")).encode()
        headers = github_headers(body, delivery="gh-delivery-1")
        first = await ingress.http.post("/github", content=body, headers=headers)
        again = await ingress.http.post("/github", content=body, headers=headers)
        forged = await ingress.http.post(
            "/github", content=body, headers={**headers, "X-Hub-Signature-256": "sha256=00"}
        )
        signed_id = github_id(body)
        assert first.status_code == 202, first.text
        assert first.json() == {"message_id": signed_id}
        assert again.status_code == 200
        assert again.json() == {"message_id": signed_id, "duplicate": True}
        assert forged.status_code == 401
        assert await depth(broker.amqp_url) == 1

    async def test_a_stripe_event_is_verified_and_its_event_id_kept(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """Stripe-Signature checks out, and Stripe's retry (signed anew) is not republished."""
        body = json.dumps({**order("o-st"), "id": "evt_1NG8Du2eZvKYlo2C"}).encode()
        first = await ingress.http.post("/stripe", content=body, headers=stripe_headers(body))
        retry = await ingress.http.post(
            "/stripe", content=body, headers=stripe_headers(body, at=int(time.time()) + 5)
        )
        assert first.status_code == 202, first.text
        assert first.json() == {"message_id": "evt_1NG8Du2eZvKYlo2C"}
        assert retry.status_code == 200
        assert retry.json()["duplicate"] is True
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert received.message_id == "evt_1NG8Du2eZvKYlo2C"
        assert await depth(broker.amqp_url) == 0

    async def test_an_allowed_address_may_post(self, ingress: Ingress) -> None:
        response = await ingress.http.post("/loopback", json=order("o-lo"))
        assert response.status_code == 202, response.text

    async def test_a_rotated_bearer_token_is_accepted(self, ingress: Ingress) -> None:
        response = await ingress.http.post(
            "/secure", json=order("o-4"), headers={"Authorization": "Bearer s3cret"}
        )
        assert response.status_code == 202, response.text


class TestRefused:
    """Bad input gets its status and a JSON error, and nothing is published."""

    @pytest.mark.parametrize(
        ("content", "status", "error", "path"),
        [
            (b'{"order_id": ', 400, "malformed JSON", ""),
            (
                json.dumps({**order("o-5"), "lines": [{"sku": "a", "qty": "2"}]}).encode(),
                400,
                "expected int, got str",
                "lines[0].qty",
            ),
            (b"x" * 5000, 413, "exceeds 4096 bytes", None),
        ],
    )
    async def test_bad_bodies(
        self,
        ingress: Ingress,
        broker: Broker,
        content: bytes,
        status: int,
        error: str,
        path: str | None,
    ) -> None:
        # When
        response = await ingress.http.post(
            "/orders", content=content, headers={"Content-Type": "application/json"}
        )
        # Then
        assert response.status_code == status, response.text
        assert error in response.json()["error"]
        if path is not None:
            assert response.json()["path"] == path
        assert await depth(broker.amqp_url) == 0

    async def test_a_body_streamed_without_length_is_cut_at_the_limit(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1000

        response = await ingress.http.post(
            "/orders", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert await depth(broker.amqp_url) == 0

    async def test_wrong_content_type(self, ingress: Ingress, broker: Broker) -> None:
        response = await ingress.http.post("/orders", content=b"order_id=o-1")
        assert response.status_code == 415
        assert "application/json" in response.json()["error"]
        assert await depth(broker.amqp_url) == 0

    @pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic czNjcmV0"])
    async def test_bad_bearer(self, ingress: Ingress, broker: Broker, header: str | None) -> None:
        headers = {"Authorization": header} if header else {}
        response = await ingress.http.post("/secure", json=order("o-6"), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]
        assert await depth(broker.amqp_url) == 0

    async def test_bad_webhook_signature(self, ingress: Ingress, broker: Broker) -> None:
        body = json.dumps(order("o-7")).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": "msg_2",
            "webhook-timestamp": str(now),
            "webhook-signature": sign_standard_webhooks(SECRET, "msg_2", now - 1, body),
        }
        response = await ingress.http.post("/hooks", content=body, headers=headers)
        assert response.status_code == 401
        assert await depth(broker.amqp_url) == 0

    async def test_a_stale_webhook_timestamp(self, ingress: Ingress, broker: Broker) -> None:
        body = json.dumps(order("o-old")).encode()
        then = int(time.time()) - 600
        headers = {
            "Content-Type": "application/json",
            "webhook-id": "msg_old",
            "webhook-timestamp": str(then),
            "webhook-signature": sign_standard_webhooks(SECRET, "msg_old", then, body),
        }
        response = await ingress.http.post("/hooks", content=body, headers=headers)
        assert response.status_code == 401
        assert "too old" in response.json()["error"]
        assert await depth(broker.amqp_url) == 0

    @pytest.mark.parametrize(
        ("case", "reason"),
        [
            ("stale", "too old"),
            ("forged", "no valid v1 signature"),
            ("missing", "missing Stripe-Signature"),
        ],
    )
    async def test_bad_stripe_signatures(
        self, ingress: Ingress, broker: Broker, case: str, reason: str
    ) -> None:
        body = json.dumps({**order("o-st2"), "id": "evt_2"}).encode()
        headers = {
            "stale": stripe_headers(body, at=int(time.time()) - 301),
            "forged": stripe_headers(body, secret="whsec_other"),
            "missing": {"Content-Type": "application/json"},
        }[case]
        response = await ingress.http.post("/stripe", content=body, headers=headers)
        assert response.status_code == 401
        assert reason in response.json()["error"]
        assert await depth(broker.amqp_url) == 0

    async def test_a_replayed_webhook_id_is_not_published_again(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """The same signed request sent twice: one event. The id with another body: 422."""
        body = json.dumps(order("o-rp")).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": "msg_rp",
            "webhook-timestamp": str(now),
            "webhook-signature": sign_standard_webhooks(SECRET, "msg_rp", now, body),
        }
        first = await ingress.http.post("/hooks", content=body, headers=headers)
        replayed = await ingress.http.post("/hooks", content=body, headers=headers)
        other = json.dumps(order("o-rp-2")).encode()
        reused = await ingress.http.post(
            "/hooks",
            content=other,
            headers={
                **headers,
                "webhook-signature": sign_standard_webhooks(SECRET, "msg_rp", now, other),
            },
        )
        assert first.status_code == 202, first.text
        assert (replayed.status_code, replayed.json()["duplicate"]) == (200, True)
        assert reused.status_code == 422
        assert "different body" in reused.json()["error"]
        assert await depth(broker.amqp_url) == 1

    async def test_a_reused_idempotency_key_is_not_published_again(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        key = {"Idempotency-Key": "order-o-ik"}
        first = await ingress.http.post("/orders", json=order("o-ik"), headers=key)
        again = await ingress.http.post("/orders", json=order("o-ik"), headers=key)
        changed = await ingress.http.post("/orders", json=order("o-ik", qty=2), headers=key)
        assert (first.status_code, again.status_code, changed.status_code) == (202, 200, 422)
        assert await depth(broker.amqp_url) == 1

    async def test_an_address_off_the_allow_list_is_forbidden(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        response = await ingress.http.post("/office", json=order("o-off"))
        assert response.status_code == 403
        assert "127.0.0.1 is not allowed" in response.json()["error"]
        assert await depth(broker.amqp_url) == 0

    async def test_unroutable_is_a_502(self, ingress: Ingress, broker: Broker) -> None:
        response = await ingress.http.post("/nowhere", json=order("o-8"))
        assert response.status_code == 502
        assert "order.lost" in response.json()["error"]
        # The ingress keeps serving afterwards.
        assert (await ingress.http.post("/orders", json=order("o-9"))).status_code == 202

    async def test_unknown_path_and_method(self, ingress: Ingress) -> None:
        missing = await ingress.http.post("/order", json={})
        assert missing.status_code == 404
        assert missing.json() == {"error": "no route /order"}
        wrong = await ingress.http.get("/orders")
        assert wrong.status_code == 405


class TestReplays:
    """A captured request sent again is never published twice: on a signed route the
    id comes from what the signature covers, whatever headers the replay adds."""

    async def test_a_standard_webhook_replayed_with_fresh_unsigned_ids_is_not_republished(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """A new Idempotency-Key and X-Correlation-Id do not make a replay a new message."""
        # Given: a signed request, accepted once
        body = json.dumps(order("o-replay")).encode()
        headers = webhook_headers(body, "msg_replay")
        first = await ingress.http.post("/hooks", content=body, headers=headers)
        # When: the captured request is sent again, within the tolerance, with fresh ids
        replayed = await ingress.http.post(
            "/hooks",
            content=body,
            headers={**headers, "Idempotency-Key": "fresh-1", "X-Correlation-Id": "saga-evil"},
        )
        # Then
        assert first.status_code == 202, first.text
        assert replayed.status_code == 200, replayed.text
        assert replayed.json() == {"message_id": "msg_replay", "duplicate": True}
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert (received.message_id, received.correlation_id) == ("msg_replay", "msg_replay")
        assert await depth(broker.amqp_url) == 0

    async def test_a_signed_route_ignores_the_callers_ids_on_the_first_request_too(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """Unsigned headers never name a signed request's message or its saga."""
        body = json.dumps(order("o-own")).encode()
        headers = {
            **webhook_headers(body, "msg_own"),
            "Idempotency-Key": "mine",
            "X-Correlation-Id": "saga-mine",
        }
        response = await ingress.http.post("/hooks", content=body, headers=headers)
        assert response.json() == {"message_id": "msg_own"}
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert (received.message_id, received.correlation_id) == ("msg_own", "msg_own")

    async def test_a_stripe_event_replayed_with_a_fresh_idempotency_key_is_not_republished(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """The event id inside the signed body is the message id, whatever the headers say."""
        body = json.dumps({**order("o-st3"), "id": "evt_replayed"}).encode()
        headers = stripe_headers(body)
        first = await ingress.http.post("/stripe", content=body, headers=headers)
        replayed = await ingress.http.post(
            "/stripe", content=body, headers={**headers, "Idempotency-Key": "fresh-2"}
        )
        assert first.json() == {"message_id": "evt_replayed"}
        assert replayed.json() == {"message_id": "evt_replayed", "duplicate": True}
        assert await depth(broker.amqp_url) == 1

    async def test_a_stripe_event_without_an_id_is_deduplicated_by_its_signed_payload(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """No event id: the digest of `t.body` is the id, so the replay is still caught."""
        # Given
        body = json.dumps(order("o-noid")).encode()
        headers = stripe_headers(body)
        # When
        first = await ingress.http.post("/stripe", content=body, headers=headers)
        replayed = await ingress.http.post("/stripe", content=body, headers=headers)
        rekeyed = await ingress.http.post(
            "/stripe", content=body, headers={**headers, "Idempotency-Key": "fresh-3"}
        )
        # Then
        assert first.status_code == 202, first.text
        message_id = first.json()["message_id"]
        assert message_id.startswith("stripe-")
        for repeat in (replayed, rekeyed):
            assert repeat.json() == {"message_id": message_id, "duplicate": True}
        assert await depth(broker.amqp_url) == 1

    async def test_a_github_delivery_replayed_under_a_fresh_delivery_id_is_not_republished(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """GitHub signs neither a timestamp nor X-GitHub-Delivery: a new one changes nothing."""
        # Given
        body = json.dumps(order("o-gh2")).encode()
        first = await ingress.http.post(
            "/github", content=body, headers=github_headers(body, delivery="d-1")
        )
        # When
        replayed = await ingress.http.post(
            "/github",
            content=body,
            headers={**github_headers(body, delivery="d-forged"), "Idempotency-Key": "fresh-4"},
        )
        # Then
        assert first.status_code == 202, first.text
        assert replayed.json() == {"message_id": github_id(body), "duplicate": True}
        assert await depth(broker.amqp_url) == 1

    async def test_a_github_delivery_is_replay_proof_only_for_the_dedupe_window(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """The documented limit: past the route's window (1 s here) a replay is accepted."""
        # Given
        body = json.dumps(order("o-gh3")).encode()
        headers = github_headers(body, delivery="d-2")
        first = await ingress.http.post("/github-brief", content=body, headers=headers)
        within = await ingress.http.post("/github-brief", content=body, headers=headers)
        # When: the window passes
        await asyncio.sleep(1.2)
        after = await ingress.http.post("/github-brief", content=body, headers=headers)
        # Then
        assert (first.status_code, within.status_code, after.status_code) == (202, 200, 202)
        assert await depth(broker.amqp_url) == 2

    async def test_an_idempotency_key_repeated_with_another_correlation_id_is_a_duplicate(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """On a route without a signature the key names the request; X-Correlation-Id
        cannot make a repeat new, and the first request's saga stands."""
        key = {"Idempotency-Key": "order-o-cor"}
        first = await ingress.http.post(
            "/orders", json=order("o-cor"), headers={**key, "X-Correlation-Id": "saga-1"}
        )
        again = await ingress.http.post(
            "/orders", json=order("o-cor"), headers={**key, "X-Correlation-Id": "saga-2"}
        )
        assert (first.status_code, again.status_code) == (202, 200)
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert received.correlation_id == "saga-1"
        assert await depth(broker.amqp_url) == 0


class TestExactBodies:
    """The ingress accepts only what the contract can hold, and says where it cannot."""

    async def test_an_unknown_field_deep_in_the_body_is_refused_with_its_path(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """`colour` is not a field of an order line: 400, nothing published."""
        body = order("o-col")
        body["lines"][0]["colour"] = "red"
        response = await ingress.http.post("/orders", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["path"] == "lines[0].colour"
        assert response.json()["error"].startswith("unknown field")
        assert await depth(broker.amqp_url) == 0

    async def test_a_repeated_key_is_refused_with_its_path(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """Two `qty` keys: which one was meant is the caller's to say."""
        content = json.dumps(order("o-dup")).replace('"qty": 1', '"qty": 1, "qty": 5').encode()
        response = await ingress.http.post(
            "/orders", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "duplicate key", "path": "lines[0].qty"}
        assert await depth(broker.amqp_url) == 0

    async def test_a_route_that_ignores_unknown_fields_publishes_only_the_contracts(
        self, ingress: Ingress, broker: Broker
    ) -> None:
        """A third party's extra fields are dropped on the way in, not passed on."""
        body = json.dumps({**order("o-extra"), "id": "evt_x", "livemode": False}).encode()
        response = await ingress.http.post("/stripe", content=body, headers=stripe_headers(body))
        assert response.status_code == 202, response.text
        [received] = await collect(broker.amqp_url, "seen", 1, seconds=5)
        assert received.json() == {**order("o-extra"), "currency": "EUR"}

    @pytest.mark.parametrize(
        "nested",
        [
            '{"a":' * 1_200 + "1" + "}" * 1_200,  # 1,200 objects, 7 KB
            "[" * 3_000 + "]" * 3_000,  # 3,000 arrays, 6 KB
        ],
        ids=["objects", "arrays"],
    )
    @pytest.mark.parametrize("path", ["/plain", "/stripe"])
    async def test_json_nested_too_deeply_is_a_400(
        self, ingress: Ingress, broker: Broker, nested: str, path: str
    ) -> None:
        """As the whole body, or as a field the contract does not have: 400, never 500."""
        whole = nested.encode()
        inside = (json.dumps(order("o-deep"))[:-1] + f', "x": {nested}}}').encode()
        answers = []
        for content in (whole, inside):
            headers = stripe_headers(content) if path == "/stripe" else {}
            response = await ingress.http.post(
                path, content=content, headers={"Content-Type": "application/json", **headers}
            )
            answers.append((response.status_code, response.json()["error"]))
        assert answers[0][0] == 400  # an array is no order: refused before any depth
        assert answers[1] == (400, "JSON nested too deeply")
        assert await depth(broker.amqp_url) == 0


class TestHealth:
    async def test_healthz_and_readyz_while_connected(self, ingress: Ingress) -> None:
        assert (await ingress.http.get("/healthz")).status_code == 200
        assert (await ingress.http.get("/readyz")).status_code == 200

    async def test_broker_unreachable_is_503_and_not_ready(self) -> None:
        # Given: a broker URL on a port nothing listens on
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        running, server, keeper, stop = await start(f"amqp://guest:guest@127.0.0.1:{port}/")
        try:
            await asyncio.sleep(0.1)
            # When / Then
            assert (await running.http.get("/healthz")).status_code == 200
            ready = await running.http.get("/readyz")
            assert ready.status_code == 503
            posted = await running.http.post("/orders", json=order("o-10"))
            assert posted.status_code == 503
            assert "unreachable" in posted.json()["error"]
        finally:
            await running.http.aclose()
            await server.close()
            stop.set()
            await keeper

    async def test_broker_down_is_503_and_broker_back_is_202_again(
        self, ingress: Ingress, broker: Broker, broker_ctl: list[str]
    ) -> None:
        """While RabbitMQ is stopped nothing is accepted; once it is back, posts are again."""
        before = await ingress.http.post("/orders", json=order("o-before"))
        assert before.status_code == 202
        try:
            await rabbitmqctl("stop_app", ctl=broker_ctl)
            down = await _until(ingress, lambda r: r.status_code == 503)
            posted = await ingress.http.post("/orders", json=order("o-down"))
            assert down.status_code == 503
            assert posted.status_code == 503
        finally:
            await rabbitmqctl("start_app", "await_startup", ctl=broker_ctl)
        ready = await _until(ingress, lambda r: r.status_code == 200, seconds=60)
        assert ready.status_code == 200
        after = await ingress.http.post("/orders", json=order("o-after"))
        assert after.status_code == 202, after.text
        # The durable queue kept the confirmed events; the refused one was never published.
        assert await depth(broker.amqp_url) == 2


def stripe_headers(
    body: bytes, *, at: int | None = None, secret: str = "whsec_stripe_test"
) -> dict[str, str]:
    """What Stripe sends: ``t=<time>,v1=<hex HMAC of "t.body">``."""
    timestamp = int(time.time()) if at is None else at
    return {
        "Content-Type": "application/json",
        "Stripe-Signature": f"t={timestamp},v1={sign_stripe(secret, timestamp, body)}",
    }


def github_headers(body: bytes, *, delivery: str) -> dict[str, str]:
    """What GitHub sends: the body's hex HMAC-SHA256 (nothing else is signed)."""
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(b"gh", body, hashlib.sha256).hexdigest(),
        "X-GitHub-Delivery": delivery,
    }


def github_id(body: bytes) -> str:
    """The message id of a GitHub delivery: a digest of its signature and body."""
    signature = "sha256=" + hmac.new(b"gh", body, hashlib.sha256).hexdigest()
    return "github-" + hashlib.sha256(signature.encode() + b"\n" + body).hexdigest()


def webhook_headers(body: bytes, webhook_id: str, *, at: int | None = None) -> dict[str, str]:
    """A Standard Webhooks request's headers, signed with the route's secret."""
    timestamp = int(time.time()) if at is None else at
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(SECRET, webhook_id, timestamp, body),
    }


async def _until(ingress: Ingress, done: Any, seconds: float = 30) -> httpx.Response:
    """Poll /readyz until `done(response)` or time is up; the last response."""
    deadline = time.monotonic() + seconds
    response = await ingress.http.get("/readyz")
    while not done(response) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        response = await ingress.http.get("/readyz")
    return response
