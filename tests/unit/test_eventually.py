"""`testing.eventually`: wait for a fact, not for time; fail naming what was awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from workers.testing import eventually, eventually_blocking


def after(calls: int, value: Any = "ready", before: Any = None) -> Callable[[], Any]:
    """A check that answers `before` for its first `calls` - 1 calls, then `value`."""
    made = 0

    def check() -> Any:
        nonlocal made
        made += 1
        return value if made >= calls else before

    check.calls = lambda: made  # type: ignore[attr-defined]
    return check


class TestEventually:
    async def test_it_returns_what_the_check_returned_once_it_holds(self) -> None:
        """Falsy answers mean not yet; the first truthy one is returned."""
        # Given
        check = after(3, value={"status": "confirmed"})
        # When
        value = await eventually(check, what="the order confirmed")
        # Then
        assert value == {"status": "confirmed"}
        assert check.calls() == 3  # type: ignore[attr-defined]

    async def test_an_async_check_is_awaited(self) -> None:
        """A coroutine function is a check too."""
        # Given
        answers = iter([0, 0, 7])

        async def depth() -> int:
            await asyncio.sleep(0)
            return next(answers)

        # When / Then
        assert await eventually(depth, what="a message in the queue") == 7

    async def test_a_check_that_asserts_is_retried_until_its_assertion_holds(self) -> None:
        """An AssertionError means not yet, so a check may say what differs."""
        # Given
        seen: list[int] = []

        def check() -> bool:
            seen.append(len(seen))
            assert len(seen) >= 3, f"only {len(seen)} seen"
            return True

        # When / Then
        assert await eventually(check, what="three seen") is True
        assert len(seen) == 3

    async def test_a_passing_wait_returns_at_once_whatever_its_timeout(self) -> None:
        """The timeout bounds a failure; it is never waited out by a check that holds."""
        # Given
        started = time.monotonic()
        # When
        await eventually(after(2), what="ready", timeout=60)
        # Then
        assert time.monotonic() - started < 5

    async def test_a_failing_wait_names_what_it_waited_for_and_the_last_answer(self) -> None:
        """After the timeout, an AssertionError says what was awaited and what was seen."""
        # Given
        started = time.monotonic()
        # When
        with pytest.raises(AssertionError) as failed:
            await eventually(lambda: [], what="a webhook accepted", timeout=0.3)
        # Then
        assert str(failed.value) == (
            "timed out after 0.3s waiting for a webhook accepted; the last check returned []"
        )
        assert time.monotonic() - started >= 0.3

    async def test_a_failing_assertion_is_the_cause_and_its_first_line_is_quoted(self) -> None:
        """The check's own AssertionError explains the failure."""

        # Given
        def check() -> bool:
            raise AssertionError("2 settled of 3 published\nmore detail")

        # When
        with pytest.raises(AssertionError, match="the last check failed: 2 settled of 3") as failed:
            await eventually(check, what="every message settled", timeout=0.1)
        # Then
        assert isinstance(failed.value.__cause__, AssertionError)
        assert "more detail" in str(failed.value.__cause__)

    async def test_any_other_error_ends_the_wait_at_once(self) -> None:
        """Only 'not yet' is retried: a broken check fails on its first call."""
        # Given
        calls = 0

        def broken() -> bool:
            nonlocal calls
            calls += 1
            raise KeyError("no such queue")

        # When / Then
        with pytest.raises(KeyError):
            await eventually(broken, what="anything", timeout=10)
        assert calls == 1

    async def test_a_zero_timeout_still_checks_once(self) -> None:
        """Even with no time at all, the check gets its one chance."""
        assert await eventually(lambda: "here", what="it", timeout=0) == "here"

    async def test_the_check_runs_again_at_the_deadline(self) -> None:
        """The last check is made at the deadline, not a pause before it."""
        # Given: a check that holds only once 0.25 s have passed
        started = time.monotonic()
        # When
        value = await eventually(
            lambda: time.monotonic() - started >= 0.25, what="a quarter second", timeout=0.25,
            interval=10,
        )  # fmt: skip
        # Then
        assert value is True

    async def test_an_async_check_that_hangs_is_cut_off(self) -> None:
        """A check that never answers cannot stretch the wait past its bound (plus a second)."""

        # Given
        async def hangs() -> bool:
            await asyncio.sleep(60)
            return True

        started = time.monotonic()
        # When
        with pytest.raises(AssertionError, match=r"did not answer within 1\.0s"):
            await eventually(hangs, what="an answer", timeout=0.1)
        # Then
        assert time.monotonic() - started < 5


class TestEventuallyBlocking:
    def test_it_pauses_with_the_given_function_and_pauses_grow_to_the_interval(self) -> None:
        """Pauses double from 10 ms up to `interval`; pika's sleep can stand in for time.sleep."""
        # Given
        pauses: list[float] = []
        check = after(7)
        # When
        value = eventually_blocking(check, what="ready", interval=0.1, pause=pauses.append)
        # Then
        assert value == "ready"
        assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])

    def test_a_failing_wait_names_what_it_waited_for(self) -> None:
        """The same message as the async flavour."""
        with pytest.raises(AssertionError, match=r"waiting for the ingress ready; .* returned 0"):
            eventually_blocking(lambda: 0, what="the ingress ready", timeout=0.05)

    def test_an_async_check_is_refused(self) -> None:
        """A coroutine would never be awaited here: the mistake is named."""

        async def check() -> bool:
            return True

        with pytest.raises(TypeError, match="await eventually"):
            eventually_blocking(check, what="ready")
