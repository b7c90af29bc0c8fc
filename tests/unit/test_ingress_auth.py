"""Ingress authentication: Standard Webhooks against the spec's example, and bearer tokens."""

from __future__ import annotations

import pytest

from workers.ingress.auth import (
    Unauthorized,
    check_bearer,
    sign_standard_webhooks,
    verify_github,
    verify_standard_webhooks,
)

# The example values published with the Standard Webhooks specification.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str = SIGNATURE, timestamp: int = TIMESTAMP) -> dict[str, str]:
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_signing_matches_the_spec_example() -> None:
    assert sign_standard_webhooks(SECRET, MSG_ID, TIMESTAMP, PAYLOAD) == SIGNATURE


def test_the_spec_example_verifies_and_yields_its_id() -> None:
    # Given / When
    message_id = verify_standard_webhooks(headers(), PAYLOAD, [SECRET], now=TIMESTAMP + 10)
    # Then
    assert message_id == MSG_ID


def test_any_listed_signature_and_any_secret_is_accepted() -> None:
    """Rotation: the sender signs with old and new secret; we hold both (or either)."""
    # Given
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="  # base64 of 16 bytes
    both = f"v1,bm90LWEtc2lnbmF0dXJl {SIGNATURE}"
    # When / Then
    assert verify_standard_webhooks(headers(both), PAYLOAD, [other, SECRET], now=TIMESTAMP)


@pytest.mark.parametrize(
    ("given", "body", "now", "reason"),
    [
        (headers(), PAYLOAD, TIMESTAMP + 301, "too old"),
        (headers(), PAYLOAD, TIMESTAMP - 301, "in the future"),
        (
            headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="),
            PAYLOAD,
            TIMESTAMP,
            "no valid",
        ),
        (headers(), b'{"test": 2432232315}', TIMESTAMP, "no valid"),
        (headers("v2," + SIGNATURE[3:]), PAYLOAD, TIMESTAMP, "no valid"),
        ({"webhook-id": MSG_ID}, PAYLOAD, TIMESTAMP, "missing"),
        ({**headers(), "webhook-timestamp": "soon"}, PAYLOAD, TIMESTAMP, "not an integer"),
    ],
)
def test_bad_requests_are_refused(
    given: dict[str, str], body: bytes, now: float, reason: str
) -> None:
    with pytest.raises(Unauthorized, match=reason):
        verify_standard_webhooks(given, body, [SECRET], now=now)


def test_bearer_accepts_any_current_secret() -> None:
    check_bearer("Bearer new-token", ["old-token", "new-token"])
    check_bearer("bearer old-token", ["old-token", "new-token"])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dXNlcjpwdw==", "expected"),
        ("Bearer ", "expected"),
        ("Bearer wrong", "invalid bearer token"),
    ],
)
def test_bearer_refuses(header: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        check_bearer(header, ["token"])


class TestGitHub:
    SECRET = "It's a Secret to Everybody"
    # GitHub's published example ("Validating webhook deliveries").
    SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    def test_the_published_example_verifies_and_yields_the_delivery_id(self) -> None:
        """GitHub's example payload and secret give its example signature."""
        headers = {"X-Hub-Signature-256": self.SIGNATURE, "X-GitHub-Delivery": "d-1"}
        assert verify_github(headers, b"Hello, World!", ["old", self.SECRET]) == "d-1"

    @pytest.mark.parametrize(
        ("headers", "body"),
        [
            ({}, b"Hello, World!"),
            ({"X-Hub-Signature-256": SIGNATURE.replace("sha256=", "sha1=")}, b"Hello, World!"),
            ({"X-Hub-Signature-256": SIGNATURE}, b"Hello, World?"),
        ],
    )
    def test_missing_malformed_or_wrong_signatures_are_refused(
        self, headers: dict[str, str], body: bytes
    ) -> None:
        """No header, another scheme, or a changed body: refused."""
        with pytest.raises(Unauthorized):
            verify_github(headers, body, [self.SECRET])
