"""A handler tested alone, with no broker: `testing.context`, `emitted` and `call`."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from contracts import Event, InvalidPayload
from workers import Context, Worker, testing


class LoafOrdered(Event, frozen=True, kw_only=True):
    """A test contract of this module's own."""

    __routing_key__ = "loaf.ordered"

    order_id: str
    loaves: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1


class LoafBaked(Event, frozen=True, kw_only=True):
    __routing_key__ = "loaf.baked"

    order_id: str
    loaves: Annotated[int, msgspec.Meta(ge=1)]
    seen_as: str = ""


class LoafLost(Event, frozen=True, kw_only=True):
    __routing_key__ = "loaf.lost"

    order_id: str


oven = Worker("oven")


@oven.handles(LoafOrdered)
async def bake(event: LoafOrdered, ctx: Context) -> LoafBaked | None:
    """One LoafBaked per order that wants loaves, naming the ids it was given."""
    if event.loaves == 0:
        return None
    seen_as = f"{ctx.worker}/{ctx.queue}/{ctx.event_type}/{ctx.message_id}/{ctx.attempt}"
    return LoafBaked(order_id=event.order_id, loaves=event.loaves, seen_as=seen_as)


class TestContext:
    def test_every_id_has_a_default_and_the_saga_starts_at_the_message(self) -> None:
        """With no arguments, a context is a first delivery that starts its own saga."""
        # When
        ctx = testing.context()
        # Then
        assert (ctx.worker, ctx.queue, ctx.message_id) == ("test", "test", "m-1")
        assert ctx.correlation_id == ctx.message_id
        assert (ctx.causation_id, ctx.attempt, ctx.redelivered) == (None, 1, False)
        assert ctx.headers == {}
        assert ctx.db is None

    def test_what_is_given_is_what_the_handler_sees(self) -> None:
        """Each id, the attempt, the headers and the database are the caller's."""
        # Given
        db = object()
        # When
        ctx = testing.context(
            worker="oven",
            message_id="m-7",
            correlation_id="saga-1",
            causation_id="m-6",
            attempt=3,
            redelivered=True,
            headers={"traceparent": "00-abc"},
            db=db,
        )
        # Then
        assert (ctx.worker, ctx.queue, ctx.message_id, ctx.correlation_id) == (
            "oven",
            "oven",
            "m-7",
            "saga-1",
        )
        assert (ctx.causation_id, ctx.attempt, ctx.redelivered) == ("m-6", 3, True)
        assert ctx.headers == {"traceparent": "00-abc"}
        assert ctx.db is db
        assert ctx.fields()["attempt"] == 3


ONE, TWO = LoafLost(order_id="o-1"), LoafLost(order_id="o-2")


class TestEmitted:
    @pytest.mark.parametrize(
        ("result", "expected"),
        [(None, []), (ONE, [ONE]), ([ONE, TWO], [ONE, TWO]), ((TWO,), [TWO]), ([], [])],
        ids=["none", "one-event", "a-list", "a-tuple", "an-empty-list"],
    )
    def test_a_handlers_result_becomes_the_list_the_runtime_publishes(
        self, result: Event | list[Event] | tuple[Event, ...] | None, expected: list[Event]
    ) -> None:
        """An event, a sequence of events or None all become a list of events."""
        # When
        events = testing.emitted(result)
        # Then
        assert type(events) is list
        assert events == expected

    async def test_a_handler_called_directly_is_normalised_too(self) -> None:
        """The documented shape: call the handler with a context, normalise what it returns."""
        # When
        events = testing.emitted(await bake(LoafOrdered(order_id="o-1"), testing.context()))
        # Then
        assert [type(e) for e in events] == [LoafBaked]


class TestCall:
    async def test_the_workers_handler_for_the_events_type_is_called(self) -> None:
        """`call` finds the handler by the event's wire name and returns its follow-ons."""
        # When
        events = await testing.call(oven, LoafOrdered(order_id="o-1", loaves=2))
        # Then
        assert events == [
            LoafBaked(order_id="o-1", loaves=2, seen_as="oven/oven/LoafOrdered/m-1/1")
        ]

    async def test_a_handler_returning_none_emits_nothing(self) -> None:
        """None is no follow-on at all."""
        assert await testing.call(oven, LoafOrdered(order_id="o-1", loaves=0)) == []

    async def test_a_given_context_is_passed_as_it_is(self) -> None:
        """A test that needs a later attempt or its own ids passes a context."""
        # Given
        ctx = testing.context(worker="w", queue="q", message_id="m-9", attempt=4)
        # When
        [baked] = await testing.call(oven, LoafOrdered(order_id="o-1"), ctx)
        # Then
        assert isinstance(baked, LoafBaked)
        assert baked.seen_as == "w/q/Event/m-9/4"

    async def test_an_event_the_worker_does_not_handle_names_what_it_handles(self) -> None:
        """A LookupError names the event and the worker's handlers."""
        with pytest.raises(LookupError, match=r"no handler for LoafLost v1 .* LoafOrdered v1"):
            await testing.call(oven, LoafLost(order_id="o-1"))

    async def test_an_event_that_could_never_arrive_fails_as_it_would_at_the_door(self) -> None:
        """Constraints are checked on decoding, not on construction: `call` decodes it."""
        # Given: eleven loaves, more than the contract allows
        too_many = LoafOrdered(order_id="o-1", loaves=11)
        # When / Then
        with pytest.raises(InvalidPayload, match=r"LoafOrdered\.loaves"):
            await testing.call(oven, too_many)

    async def test_a_follow_on_that_would_not_decode_downstream_fails(self) -> None:
        """A follow-on breaking its own contract is caught in the unit test, not downstream."""
        # Given: a worker that emits a LoafBaked of zero loaves
        broken = Worker("broken")

        @broken.handles(LoafOrdered)
        async def zero(event: LoafOrdered, ctx: Context) -> LoafBaked:
            return LoafBaked(order_id=event.order_id, loaves=0)

        # When / Then
        with pytest.raises(InvalidPayload, match=r"LoafBaked\.loaves"):
            await testing.call(broken, LoafOrdered(order_id="o-1"))
