"""The stand-in gateway and carrier (real HTTP on localhost), and the workers'
clients of them: idempotency, declines, injected failures, refunds and voids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fulfilment.standins import Faults, Standins, serve
from fulfilment.standins.server import QUOTA_RETRY_AFTER
from fulfilment.workers.clients import (
    Booking,
    Captured,
    CarrierClient,
    Declined,
    GatewayClient,
    Unavailable,
)

from workers import Reject, Retry


@pytest.fixture
def standins() -> Iterator[Standins]:
    with serve(port=0, faults=Faults(slow_seconds=0.05, hang_seconds=1)) as state:
        yield state


async def charge(
    gateway: GatewayClient, key: str, customer: str = "c-1", amount: int = 500
) -> Captured | Declined:
    return await gateway.charge(
        key=key, order_id=f"o-{key}", customer_id=customer, amount_cents=amount, currency="EUR"
    )


class TestGateway:
    async def test_the_same_key_is_charged_once(self, standins: Standins) -> None:
        """A retried charge gets the first answer back, and the gateway holds one charge."""
        # Given
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=2)
        # When
        first = await charge(gateway, "k-1")
        second = await charge(gateway, "k-1")
        await gateway.aclose()
        # Then
        assert isinstance(first, Captured)
        assert first == second
        assert len(standins.charges) == 1
        assert standins.requests["k-1"] == 2

    async def test_a_decline_is_an_answer_not_an_error(self, standins: Standins) -> None:
        # Given
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=2)
        # When
        declined = await charge(gateway, "k-2", customer="c-2-decline")
        over_limit = await charge(gateway, "k-3", amount=10_000_000)
        await gateway.aclose()
        # Then
        assert declined == Declined("card declined")
        assert over_limit == Declined("amount over limit")

    async def test_a_flaky_customer_gets_two_503s_per_key_then_an_answer(
        self, standins: Standins
    ) -> None:
        # Given
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=2)
        # When
        failures = []
        for _ in range(2):
            with pytest.raises(Unavailable) as caught:
                await charge(gateway, "k-4", customer="c-4-flaky")
            failures.append(str(caught.value))
        answer = await charge(gateway, "k-4", customer="c-4-flaky")
        await gateway.aclose()
        # Then
        assert failures == ["payment gateway answered 503 Service Unavailable"] * 2
        assert isinstance(answer, Captured)

    async def test_a_quota_customer_is_told_to_come_back_later_once_per_key(
        self, standins: Standins
    ) -> None:
        """429 with Retry-After becomes Retry(after=): the runtime's delay tier, not
        in-process retries."""
        # Given
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=2)
        # When
        with pytest.raises(Retry) as caught:
            await charge(gateway, "k-q", customer="c-9-quota")
        answer = await charge(gateway, "k-q", customer="c-9-quota")
        await gateway.aclose()
        # Then
        assert caught.value.reason == "payment gateway answered 429 Too Many Requests"
        assert caught.value.after == timedelta(seconds=QUOTA_RETRY_AFTER)
        assert isinstance(answer, Captured)

    async def test_a_timed_out_charge_was_made_and_its_retry_finds_it(
        self, standins: Standins
    ) -> None:
        """The first request hangs past the client's timeout; the gateway acted anyway,
        so the retry with the same key returns that charge instead of a second one."""
        # Given
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=0.2)
        # When
        with pytest.raises(httpx.TimeoutException):
            await charge(gateway, "k-5", customer="c-5-timeout")
        answer = await charge(gateway, "k-5", customer="c-5-timeout")
        await gateway.aclose()
        # Then
        assert isinstance(answer, Captured)
        assert [c.key for c in standins.charges.values()] == ["k-5"]

    async def test_a_refund_gives_back_a_charge_and_voids_an_unseen_key(
        self, standins: Standins
    ) -> None:
        """Refunding twice is one refund; a voided key cannot be charged later."""
        # Given
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=2)
        await charge(gateway, "k-6")
        # When
        refunded = await gateway.refund(key="k-6")
        again = await gateway.refund(key="k-6")
        voided = await gateway.refund(key="k-7")
        late = await charge(gateway, "k-7")
        await gateway.aclose()
        # Then
        assert (refunded.status, refunded.amount_cents) == ("refunded", 500)
        assert again.status == "refunded"
        assert voided.status == "voided"
        assert isinstance(late, Declined)

    async def test_a_random_error_rate_answers_503(self, standins: Standins) -> None:
        # Given
        standins.faults.error_rate = 1.0
        gateway = GatewayClient(f"{standins.url}/gateway", timeout=2)
        # When / Then
        with pytest.raises(Unavailable):
            await charge(gateway, "k-8")
        await gateway.aclose()
        assert standins.charges == {}

    async def test_a_malformed_request_is_rejected_for_good(self, standins: Standins) -> None:
        """A 4xx other than a decline will never succeed: Reject parks the message."""
        # Given
        gateway = GatewayClient(f"{standins.url}/nowhere", timeout=2)
        # When / Then
        with pytest.raises(Reject, match="404"):
            await charge(gateway, "k-9")
        await gateway.aclose()

    async def test_an_unreachable_gateway_is_a_transient_error(self) -> None:
        # Given
        gateway = GatewayClient("http://127.0.0.1:9/gateway", timeout=1)
        # When / Then
        with pytest.raises(httpx.ConnectError):
            await charge(gateway, "k-10")
        await gateway.aclose()


class TestCarrier:
    async def test_a_booking_is_made_once_per_key_and_can_be_called_off(
        self, standins: Standins
    ) -> None:
        # Given
        carrier = CarrierClient(f"{standins.url}/carrier", timeout=2)
        # When
        first = await carrier.book(key="b-1", order_id="o-1", customer_id="c-1")
        second = await carrier.book(key="b-1", order_id="o-1", customer_id="c-1")
        cancelled = await carrier.cancel(key="b-1")
        voided = await carrier.cancel(key="b-2")
        await carrier.aclose()
        # Then
        assert isinstance(first, Booking)
        assert first == second
        assert (cancelled, voided) == ("cancelled", "voided")

    async def test_a_hanging_carrier_times_the_client_out_and_books_nothing(
        self, standins: Standins
    ) -> None:
        # Given
        carrier = CarrierClient(f"{standins.url}/carrier", timeout=0.2)
        # When / Then
        with pytest.raises(httpx.TimeoutException):
            await carrier.book(key="b-3", order_id="o-3", customer_id="c-3-hang")
        await carrier.aclose()
        assert standins.bookings == {}


def test_the_faults_can_be_changed_over_http(standins: Standins) -> None:
    # Given / When
    answer = httpx.put(f"{standins.url}/faults", json={"error_rate": 0.25})
    # Then
    assert answer.json()["error_rate"] == 0.25
    assert standins.faults.error_rate == 0.25
