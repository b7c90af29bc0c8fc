"""Which ids a request's event gets (`workers.ingress.identity`): signed material only
on a signed route, the caller's headers only on a route without a signature."""

from __future__ import annotations

import hashlib

import pytest

from topology.model import IngressAuthType
from workers.ingress.identity import InvalidId, request_ids

BODY = b'{"order_id": "o-1"}'
CALLER = {"Idempotency-Key": "fresh-key", "X-Correlation-Id": "saga-evil"}


class TestSignedRoutes:
    """The caller's Idempotency-Key and X-Correlation-Id change nothing on a signed route."""

    @pytest.mark.parametrize(
        ("auth", "proof", "body", "expected"),
        [
            ("standard-webhooks", "msg_1", BODY, "msg_1"),
            ("stripe", "1700000000", b'{"id": "evt_1", "order_id": "o-1"}', "evt_1"),
            (
                "stripe",
                "1700000000",
                BODY,
                "stripe-" + hashlib.sha256(b"1700000000." + BODY).hexdigest(),
            ),
            (
                "github",
                "sha256=abc",
                BODY,
                "github-" + hashlib.sha256(b"sha256=abc\n" + BODY).hexdigest(),
            ),
        ],
    )
    def test_the_message_id_comes_from_signed_material_alone(
        self, auth: IngressAuthType, proof: str, body: bytes, expected: str
    ) -> None:
        """webhook-id; the Stripe event id, else a digest of `t.body`; a digest of a
        GitHub delivery's signature and body. Headers the caller may add are ignored."""
        # Given: a caller who adds its own id and correlation headers
        headers = {**CALLER, "X-GitHub-Delivery": "delivery-fresh"}
        # When
        ids = request_ids(auth, headers, body, proof)
        # Then
        assert (ids.message_id, ids.correlation_id, ids.repeatable) == (expected, expected, True)

    def test_a_stripe_event_signed_again_at_another_time_without_an_id_is_another_message(
        self,
    ) -> None:
        """Without an event id, only the signed timestamp tells two sends apart."""
        first = request_ids("stripe", {}, BODY, "1700000000")
        again = request_ids("stripe", {}, BODY, "1700000005")
        assert first.message_id != again.message_id

    def test_a_signed_id_longer_than_amqp_allows_is_refused(self) -> None:
        """AMQP short strings hold 255 bytes."""
        with pytest.raises(InvalidId, match="webhook-id is longer than 255 bytes"):
            request_ids("standard-webhooks", {}, BODY, "m" * 256)


class TestUnsignedRoutes:
    """Without a signature, the caller's headers are all there is."""

    @pytest.mark.parametrize("auth", [None, "bearer"])
    def test_the_idempotency_key_and_correlation_id_are_the_callers(
        self, auth: IngressAuthType | None
    ) -> None:
        """Both headers are taken as sent; the request is repeatable by its key."""
        ids = request_ids(auth, CALLER, BODY, None)
        assert (ids.message_id, ids.correlation_id, ids.repeatable) == (
            "fresh-key",
            "saga-evil",
            True,
        )

    def test_without_a_key_the_message_id_is_fresh_and_not_remembered(self) -> None:
        """Two posts without an Idempotency-Key are two events."""
        first, second = (request_ids(None, {}, BODY, None) for _ in range(2))
        assert first.message_id != second.message_id
        assert first.correlation_id == first.message_id
        assert not first.repeatable

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({"Idempotency-Key": "k" * 256}, "Idempotency-Key is longer than 255 bytes"),
            ({"X-Correlation-Id": "\udcff"}, "X-Correlation-Id is not valid UTF-8"),
        ],
    )
    def test_an_id_that_cannot_be_an_amqp_id_is_refused(
        self, headers: dict[str, str], reason: str
    ) -> None:
        """Too long, or bytes that are not UTF-8 (aiohttp hands those over escaped)."""
        with pytest.raises(InvalidId, match=reason):
            request_ids(None, headers, BODY, None)
