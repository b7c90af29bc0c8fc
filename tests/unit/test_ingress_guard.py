"""The connection guard (`workers.ingress.guard`): when a slow client is cut off
(pure), and the shape of aiohttp it relies on."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from topology.duration import Duration
from topology.model import IngressLimits
from workers.ingress.guard import Handler, Phase, Progress, cut_at

LIMITS = IngressLimits(
    head_timeout=Duration(10_000),
    idle_timeout=Duration(5_000),
    body_timeout=Duration(10_000),
    min_body_rate=1000,
    keepalive_timeout=Duration(75_000),
)


class TestCutAt:
    """Each phase of a request has its deadline; the ingress's own work has none."""

    def test_a_head_must_be_in_within_the_head_timeout_of_the_connection(self) -> None:
        """A connection that sends nothing at all is cut when the head is due."""
        assert cut_at(Progress(Phase.HEAD, since=100.0), LIMITS) == (110.0, "head_timeout")

    def test_a_head_that_stalls_is_cut_after_the_idle_timeout(self) -> None:
        """Bytes of a head, then silence: cut 5 s after the last one."""
        progress = Progress(Phase.HEAD, since=100.0, last_byte=101.0)
        assert cut_at(progress, LIMITS) == (106.0, "idle_timeout")

    def test_a_trickled_head_is_cut_at_the_head_timeout_however_steady(self) -> None:
        """A byte a second never goes idle, and is cut all the same."""
        progress = Progress(Phase.HEAD, since=100.0, last_byte=109.5)
        assert cut_at(progress, LIMITS) == (110.0, "head_timeout")

    @pytest.mark.parametrize(
        ("received", "last_byte", "expected"),
        [
            (0, 100.0, (105.0, "idle_timeout")),
            (2_000, 104.0, (109.0, "idle_timeout")),
            (500, 110.0, (110.5, "min_body_rate")),
            (50_000, 158.0, (160.0, "min_body_rate")),
        ],
    )
    def test_a_body_earns_a_second_per_min_body_rate_bytes_and_may_not_stall(
        self, received: int, last_byte: float, expected: tuple[float, str]
    ) -> None:
        """10 s plus 1 s per 1,000 bytes received; and never 5 s without a byte."""
        progress = Progress(Phase.BODY, since=100.0, last_byte=last_byte, body_bytes=received)
        assert cut_at(progress, LIMITS) == expected

    def test_a_body_sent_at_the_minimum_rate_is_never_cut(self) -> None:
        """At exactly min_body_rate, the deadline keeps 10 s ahead of the clock."""
        for second in range(1, 600):
            progress = Progress(
                Phase.BODY, since=0.0, last_byte=float(second), body_bytes=1000 * second
            )
            due = cut_at(progress, LIMITS)
            assert due is not None
            assert due[0] > second

    def test_a_kept_alive_connection_is_closed_after_the_keepalive_timeout(self) -> None:
        """Between requests, only the keep-alive limit applies."""
        assert cut_at(Progress(Phase.IDLE, since=100.0), LIMITS) == (175.0, "keepalive_timeout")

    def test_nothing_is_timed_while_the_ingress_works_on_a_request(self) -> None:
        """A broker confirm or a synchronous reply is the route's business, not the client's."""
        assert cut_at(Progress(Phase.BUSY, since=100.0, last_byte=100.0), LIMITS) is None


class TestAiohttpShape:
    """What the guard relies on in aiohttp; if one of these fails, revisit guard.py."""

    async def test_the_runners_server_makes_an_asyncio_protocol_per_connection(self) -> None:
        """`AppRunner.server()` is the protocol factory; its protocol has asyncio's methods."""
        # Given
        runner = web.AppRunner(web.Application(), keepalive_timeout=7.0)
        await runner.setup()
        try:
            # When
            assert isinstance(runner.server, web.Server)
            protocol = runner.server()
            # Then
            assert isinstance(protocol, asyncio.Protocol)
            for method in (
                "connection_made",
                "data_received",
                "eof_received",
                "connection_lost",
                "pause_writing",
                "resume_writing",
            ):
                assert callable(getattr(protocol, method)), method
            assert protocol.keepalive_timeout == 7.0  # AppRunner's keywords reach it
        finally:
            await runner.cleanup()

    def test_a_request_names_its_protocol_and_says_when_its_body_is_in(self) -> None:
        """`request.protocol` and `request.content.is_eof()` are public and present."""
        request = make_mocked_request("POST", "/orders")
        assert request.protocol is not None
        assert isinstance(request.content.is_eof(), bool)

    def test_middlewares_can_be_added_before_the_app_starts(self) -> None:
        """The guard's middleware is appended to `app.middlewares`."""
        app = web.Application()

        @web.middleware
        async def passing(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await handler(request)

        app.middlewares.append(passing)
        assert list(app.middlewares) == [passing]

    def test_a_server_is_still_built_from_keyword_handler_arguments(self) -> None:
        """`keepalive_timeout` is among RequestHandler's keywords (AppRunner passes it on)."""
        from aiohttp.web_protocol import RequestHandler

        assert "keepalive_timeout" in inspect.signature(RequestHandler).parameters
