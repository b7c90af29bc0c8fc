"""Ingress authentication: Standard Webhooks against the spec's example, GitHub's
published example, Stripe against Stripe's own library, bearer tokens, allow-lists."""

from __future__ import annotations

import time

import pytest
import stripe

from workers.ingress.auth import (
    Forbidden,
    Unauthorized,
    check_bearer,
    check_ip,
    parse_networks,
    sign_standard_webhooks,
    sign_stripe,
    verify_github,
    verify_standard_webhooks,
    verify_stripe,
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

    def test_the_published_example_verifies_and_yields_its_signature(self) -> None:
        """GitHub's example payload and secret give its example signature, which the
        check returns (the unsigned X-GitHub-Delivery is not what it vouches for)."""
        headers = {"X-Hub-Signature-256": self.SIGNATURE, "X-GitHub-Delivery": "d-1"}
        assert verify_github(headers, b"Hello, World!", ["old", self.SECRET]) == self.SIGNATURE

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


class TestStripe:
    """Stripe-Signature, checked against Stripe's own Python library both ways."""

    SECRET = "whsec_test_7Hq0n3Jm"
    PAYLOAD = b'{\n  "id": "evt_test_webhook",\n  "object": "event"\n}'
    NOW = 1_700_000_000

    def header_from_stripe(self, secret: str, timestamp: int) -> str:
        signature = stripe.WebhookSignature._compute_signature(
            f"{timestamp}.{self.PAYLOAD.decode()}", secret
        )
        return f"t={timestamp},v1={signature}"

    def test_a_header_signed_by_stripes_library_verifies_and_yields_its_timestamp(
        self,
    ) -> None:
        """The signed `t` comes back: part of the message id of an event without an id."""
        header = self.header_from_stripe(self.SECRET, self.NOW)
        signed_at = verify_stripe(
            {"Stripe-Signature": header}, self.PAYLOAD, ["whsec_old", self.SECRET], now=self.NOW
        )
        assert signed_at == str(self.NOW)

    def test_stripes_library_accepts_our_signature(self, monkeypatch: pytest.MonkeyPatch) -> None:
        header = f"t={self.NOW},v1={sign_stripe(self.SECRET, self.NOW, self.PAYLOAD)}"
        # Stripe's check reads the clock: pin it so the fixed timestamp is current.
        monkeypatch.setattr(time, "time", lambda: float(self.NOW))
        assert stripe.WebhookSignature.verify_header(
            self.PAYLOAD.decode(), header, self.SECRET, tolerance=300
        )

    def test_any_of_several_v1_signatures_and_other_schemes_are_ignored(self) -> None:
        good = self.header_from_stripe(self.SECRET, self.NOW).partition(",v1=")[2]
        header = f"t={self.NOW},v0=abc,v1={'0' * 64},v1={good}"
        verify_stripe({"Stripe-Signature": header}, self.PAYLOAD, [self.SECRET], now=self.NOW)

    @pytest.mark.parametrize(
        ("header", "now", "reason"),
        [
            (None, NOW, "missing Stripe-Signature"),
            ("v1=abc", NOW, "t=<timestamp> and v1="),
            ("t=soon,v1=abc", NOW, "not an integer"),
            ("stale", NOW + 301, "too old"),
            ("stale", NOW - 301, "in the future"),
            ("wrong-secret", NOW, "no valid v1 signature"),
        ],
    )
    def test_refusals(self, header: str | None, now: int, reason: str) -> None:
        if header == "stale":
            header = self.header_from_stripe(self.SECRET, self.NOW)
        elif header == "wrong-secret":
            header = self.header_from_stripe("whsec_other", self.NOW)
        given = {} if header is None else {"Stripe-Signature": header}
        with pytest.raises(Unauthorized, match=reason):
            verify_stripe(given, self.PAYLOAD, [self.SECRET], now=now)

    def test_a_changed_body_is_refused(self) -> None:
        header = self.header_from_stripe(self.SECRET, self.NOW)
        with pytest.raises(Unauthorized):
            verify_stripe(
                {"Stripe-Signature": header}, self.PAYLOAD + b" ", [self.SECRET], now=self.NOW
            )


class TestAllowList:
    NETWORKS = parse_networks(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"])

    @pytest.mark.parametrize(
        "remote", ["10.1.2.3", "192.168.1.7", "2001:db8::1", "::ffff:10.9.9.9"]
    )
    def test_addresses_inside_are_allowed(self, remote: str) -> None:
        check_ip(remote, self.NETWORKS)

    @pytest.mark.parametrize("remote", ["127.0.0.1", "192.168.1.8", "2001:db9::1", None, "host"])
    def test_addresses_outside_or_unknown_are_forbidden(self, remote: str | None) -> None:
        with pytest.raises(Forbidden):
            check_ip(remote, self.NETWORKS)

    def test_a_bad_entry_is_named(self) -> None:
        with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address or CIDR block"):
            parse_networks(["10.0.0.300"])
