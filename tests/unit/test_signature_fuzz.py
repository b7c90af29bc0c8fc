"""The ingress's credential checks, fuzzed: whatever a caller sends, a check either
passes or raises Unauthorized (a 401, never a 500), and a correctly signed request
always passes.

Header values are drawn as aiohttp hands them over: arbitrary text, and arbitrary
bytes decoded as UTF-8 with ``surrogateescape`` (what aiohttp does with bytes that
are not UTF-8), beside near misses of each scheme's syntax. Each property runs
FLEET_FUZZ_EXAMPLES examples (default 200: a few seconds for the file); raise it
for a longer hunt, e.g. ``FLEET_FUZZ_EXAMPLES=20000 pytest tests/unit/test_signature_fuzz.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import string
from collections.abc import Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from workers import standard_webhooks
from workers.ingress.auth import (
    Unauthorized,
    check_bearer,
    sign_stripe,
    verify_github,
    verify_standard_webhooks,
    verify_stripe,
)

NOW = 1_750_000_000
EXAMPLES = int(os.environ.get("FLEET_FUZZ_EXAMPLES", "200"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared, busy machine: time per example says nothing here
    suppress_health_check=[HealthCheck.too_slow],
)
# --- what a hostile caller can put in a header --------------------------------------

#: Bytes that are not UTF-8 reach the handler as lone surrogates (``\udcff``).
escaped = st.binary(max_size=64).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
digits = st.one_of(
    st.integers(min_value=NOW - 300, max_value=NOW + 300).map(str),  # fresh, so checks go on
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=10**300, max_value=10**4000).map(str),  # past any float
    st.text(alphabet="0123456789 _+-٣१", max_size=40),  # what int() accepts, or nearly
)
junk = st.one_of(st.text(max_size=80), escaped, digits)
b64ish = st.text(alphabet=string.ascii_letters + string.digits + "+/=,", max_size=60)
hexish = st.text(alphabet="0123456789abcdefABCDEF", max_size=70)


def maybe(values: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """A header that is absent one time in four."""
    return st.none() | values | values | values


def headers_of(**values: str | None) -> CIMultiDict[str]:
    """Headers as aiohttp holds them (case-insensitive), leaving out the absent ones."""
    return CIMultiDict({name.replace("_", "-"): v for name, v in values.items() if v is not None})


standard_signature = st.lists(
    st.one_of(junk, b64ish.map(lambda v: "v1," + v), b64ish.map(lambda v: "v1a," + v)),
    max_size=4,
).map(" ".join)
stripe_signature = st.lists(
    st.one_of(
        junk,
        digits.map(lambda v: "t=" + v),
        hexish.map(lambda v: "v1=" + v),
        hexish.map(lambda v: "v0=" + v),
        st.just("t="),
        st.just("v1="),
    ),
    max_size=5,
).map(",".join)
github_signature = st.one_of(junk, hexish.map(lambda v: "sha256=" + v), st.just("sha256="))

# --- secrets a route may hold -------------------------------------------------------

whsec = st.binary(min_size=1, max_size=64).map(
    lambda key: standard_webhooks.SECRET_PREFIX + base64.b64encode(key).decode()
)
#: Environment variables may hold any text, undecodable bytes included.
plain_secret = st.one_of(st.text(min_size=1, max_size=40), escaped.filter(bool))
token = st.text(alphabet=string.ascii_letters + string.digits + "-._~+/=", min_size=1)
body = st.binary(max_size=256)


def refuses_only_with_unauthorized(check: Callable[[], object]) -> None:
    """Run a check: passing and Unauthorized are fine; anything else fails the test."""
    try:
        check()
    except Unauthorized as exc:
        reason = str(exc)
    else:
        return
    assert reason, "an Unauthorized says why"


class TestHostileInputIsOnlyEverUnauthorized:
    """No header or body makes a check raise anything but Unauthorized."""

    @fuzz
    @given(
        maybe(junk),
        maybe(digits | junk),
        maybe(standard_signature),
        body,
        st.lists(whsec, min_size=1, max_size=3),
    )
    @example("msg_1", "9" * 400, "v1,AAAA", b"{}", ["whsec_AAAA"])  # an int past any float
    @example("\udcff", str(NOW), "v1,AAAA", b"{}", ["whsec_AAAA"])  # bytes that are not UTF-8
    def test_standard_webhooks(
        self,
        webhook_id: str | None,
        timestamp: str | None,
        signature: str | None,
        payload: bytes,
        secrets: list[str],
    ) -> None:
        """webhook-id, webhook-timestamp and webhook-signature, each absent or any text."""
        headers = headers_of(
            webhook_id=webhook_id, webhook_timestamp=timestamp, webhook_signature=signature
        )
        refuses_only_with_unauthorized(
            lambda: verify_standard_webhooks(headers, payload, secrets, now=NOW)
        )

    @fuzz
    @given(maybe(github_signature), body, st.lists(plain_secret, min_size=1, max_size=3))
    @example("sha256=\udcff", b"{}", ["gh"])
    @example("sha256=00", b"{}", ["\udcff"])  # a secret from an undecodable environment
    def test_github(self, signature: str | None, payload: bytes, secrets: list[str]) -> None:
        """X-Hub-Signature-256 absent or any text, with any secrets."""
        headers = headers_of(X_Hub_Signature_256=signature)
        refuses_only_with_unauthorized(lambda: verify_github(headers, payload, secrets))

    @fuzz
    @given(maybe(stripe_signature), body, st.lists(plain_secret, min_size=1, max_size=3))
    @example("t=" + "9" * 400 + ",v1=00", b"{}", ["whsec_x"])
    @example(f"t={NOW},v1=\udcff", b"{}", ["whsec_x"])
    def test_stripe(self, signature: str | None, payload: bytes, secrets: list[str]) -> None:
        """Stripe-Signature absent, any text, or any arrangement of t=, v1= and v0= parts."""
        headers = headers_of(Stripe_Signature=signature)
        refuses_only_with_unauthorized(lambda: verify_stripe(headers, payload, secrets, now=NOW))

    @fuzz
    @given(
        maybe(st.one_of(junk, junk.map(lambda v: "Bearer " + v))),
        st.lists(plain_secret, min_size=1, max_size=3),
    )
    @example("Bearer \udcff", ["s3cret"])
    def test_bearer(self, authorization: str | None, secrets: list[str]) -> None:
        """Authorization absent, any text, or ``Bearer`` and any text."""
        refuses_only_with_unauthorized(lambda: check_bearer(authorization, secrets))


class TestCorrectlySignedRequestsAlwaysVerify:
    """Whatever the body, id, secret and moment, a request signed right is accepted."""

    @fuzz
    @given(
        st.text(min_size=1, max_size=40),
        body,
        whsec,
        st.lists(whsec, max_size=2),
        st.integers(min_value=-300, max_value=300),
    )
    def test_standard_webhooks(
        self, webhook_id: str, payload: bytes, secret: str, others: list[str], skew: int
    ) -> None:
        """Signed with one of the route's secrets, sent up to 5 minutes early or late."""
        sent = NOW + skew
        headers = headers_of(
            webhook_id=webhook_id,
            webhook_timestamp=str(sent),
            webhook_signature=standard_webhooks.signature_header(
                [*others, secret], webhook_id, sent, payload
            ),
        )
        assert verify_standard_webhooks(headers, payload, [secret], now=NOW) == webhook_id

    @fuzz
    @given(body, st.text(min_size=1, max_size=40), st.lists(st.text(min_size=1), max_size=2))
    def test_github(self, payload: bytes, secret: str, others: list[str]) -> None:
        """The hex HMAC-SHA256 of the body with one of the route's secrets."""
        digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
        headers = headers_of(X_Hub_Signature_256="sha256=" + digest)
        assert verify_github(headers, payload, [*others, secret]) == "sha256=" + digest

    @fuzz
    @given(
        body,
        st.text(min_size=1, max_size=40),
        st.integers(min_value=-300, max_value=300),
        st.lists(hexish.map(lambda v: "v1=" + v), max_size=2),
    )
    def test_stripe(self, payload: bytes, secret: str, skew: int, decoys: list[str]) -> None:
        """t= and a v1= made with the secret, among other v1= values (Stripe's rotation)."""
        sent = NOW + skew
        header = ",".join([f"t={sent}", *decoys, f"v1={sign_stripe(secret, sent, payload)}"])
        headers = headers_of(Stripe_Signature=header)
        assert verify_stripe(headers, payload, [secret], now=NOW) == str(sent)

    @fuzz
    @given(token, st.lists(token, max_size=2), st.sampled_from(["Bearer", "bearer", "BEARER"]))
    def test_bearer(self, secret: str, others: list[str], scheme: str) -> None:
        """``Bearer <token>``, the scheme in any case, the token one of the route's."""
        check_bearer(f"{scheme} {secret}", [*others, secret])
