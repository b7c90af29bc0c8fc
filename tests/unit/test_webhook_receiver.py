"""The stand-in webhook receiver: verifies, dedupes, injects failures."""

from __future__ import annotations

import time

from fulfilment.standins import Answer, WebhookReceiver

from workers.standard_webhooks import new_secret, signature_header

SECRET = new_secret()


def signed(message_id: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": signature_header([secret], message_id, now, body),
    }


def test_an_unsigned_or_wrongly_signed_request_gets_401() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    assert receiver.handle("/webhooks/x", {}, b"{}").status == 401
    assert receiver.handle("/webhooks/x", signed("m", b"{}", new_secret()), b"{}").status == 401
    assert receiver.accepted == {}
    assert [r.verified for r in receiver.received] == [False, False]


def test_a_second_delivery_of_an_id_is_a_duplicate() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    first = receiver.handle("/webhooks/x", signed("m-1", b'{"a": 1}'), b'{"a": 1}')
    again = receiver.handle("/webhooks/x", signed("m-1", b'{"a": 1}'), b'{"a": 1}')
    assert (first.status, again.status) == (200, 200)
    assert [r.duplicate for r in receiver.received] == [False, True]
    assert receiver.accepted["m-1"].body == {"a": 1}


def test_a_flaky_body_fails_twice_per_id() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    body = b'{"order_id": "o-webhook-flaky"}'
    statuses = [receiver.handle("/w", signed("m-2", body), body).status for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_scripted_answers_come_first_in_order() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    receiver.script([Answer(429, {"Retry-After": "1"}), 410])
    answers = [receiver.handle("/w", signed(f"m-{i}", b"{}"), b"{}") for i in range(3)]
    assert [(a.status, dict(a.headers)) for a in answers] == [
        (429, {"Retry-After": "1"}),
        (410, {}),
        (200, {}),
    ]
