"""Standard Webhooks signatures: made with every secret, verified with any."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from workers.standard_webhooks import (
    InvalidSecret,
    InvalidSignature,
    new_secret,
    sign,
    signature_header,
    verify,
)

OLD = "whsec_" + base64.b64encode(b"old secret, 24 bytes long").decode()
NEW = "whsec_" + base64.b64encode(b"new secret, 24 bytes long").decode()
BODY = b'{"order_id":"o-1"}'


def headers(signature: str, *, message_id: str = "msg-1", timestamp: int = 1_700_000_000):
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


class TestSigning:
    def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body(self) -> None:
        """Computed independently: base64(HMAC-SHA256(key, "id.timestamp.body"))."""
        # Given
        key = base64.b64decode(NEW.removeprefix("whsec_"))
        expected = hmac.new(key, b"msg-1.1700000000." + BODY, hashlib.sha256).digest()
        # When
        signature = sign(NEW, "msg-1", 1_700_000_000, BODY)
        # Then
        assert signature == "v1," + base64.b64encode(expected).decode()

    def test_the_header_carries_one_signature_per_secret(self) -> None:
        # When
        header = signature_header([NEW, OLD], "msg-1", 1_700_000_000, BODY)
        # Then
        assert header.split(" ") == [
            sign(NEW, "msg-1", 1_700_000_000, BODY),
            sign(OLD, "msg-1", 1_700_000_000, BODY),
        ]

    def test_a_secret_that_is_not_base64_is_refused(self) -> None:
        with pytest.raises(InvalidSecret):
            sign("whsec_not base64!", "msg-1", 1, BODY)

    def test_new_secrets_are_usable_and_distinct(self) -> None:
        first, second = new_secret(), new_secret()
        assert first != second
        assert sign(first, "m", 1, b"") != sign(second, "m", 1, b"")


class TestVerifying:
    NOW = 1_700_000_000

    def test_a_receiver_with_only_the_new_secret_accepts_a_rotated_signature(self) -> None:
        """The sender signs with old and new: a receiver already on the new one verifies."""
        # Given
        signed = headers(signature_header([NEW, OLD], "msg-1", self.NOW, BODY))
        # When / Then
        assert verify(signed, BODY, [NEW], now=self.NOW) == "msg-1"
        assert verify(signed, BODY, [OLD], now=self.NOW) == "msg-1"

    def test_another_secret_is_refused(self) -> None:
        signed = headers(signature_header([OLD], "msg-1", self.NOW, BODY))
        with pytest.raises(InvalidSignature, match="no valid webhook-signature"):
            verify(signed, BODY, [NEW], now=self.NOW)

    def test_a_changed_body_is_refused(self) -> None:
        signed = headers(signature_header([NEW], "msg-1", self.NOW, BODY))
        with pytest.raises(InvalidSignature):
            verify(signed, BODY + b" ", [NEW], now=self.NOW)

    def test_a_stale_timestamp_is_refused(self) -> None:
        signed = headers(signature_header([NEW], "msg-1", self.NOW, BODY), timestamp=self.NOW)
        with pytest.raises(InvalidSignature, match="too old"):
            verify(signed, BODY, [NEW], now=self.NOW + 301)

    def test_missing_headers_are_refused(self) -> None:
        with pytest.raises(InvalidSignature, match="missing"):
            verify({}, BODY, [NEW], now=self.NOW)
