"""The declaration API: Worker, @handles, what handlers emit, and the wiring they report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional

import pytest

from contracts import Event
from topology import EventRoute, WorkerWiring
from workers.context import Context
from workers.worker import Resources, Worker


class ParcelShipped(Event, frozen=True):
    """A test-only event a worker handles."""

    __routing_key__ = "parcel.shipped"

    parcel_id: str


class ParcelShippedV2(Event, frozen=True):
    """Version 2 of ParcelShipped, on the same routing key."""

    __wire_name__ = "ParcelShipped"
    __version__ = 2
    __routing_key__ = "parcel.shipped"

    parcel_id: str
    carrier: str


class ParcelDelivered(Event, frozen=True):
    """A test-only follow-on event."""

    __routing_key__ = "parcel.delivered"

    parcel_id: str


class ParcelLost(Event, frozen=True):
    """Another test-only follow-on event."""

    __routing_key__ = "parcel.lost"

    parcel_id: str


async def track(event: ParcelShipped, ctx: Context) -> ParcelDelivered | ParcelLost:
    """A handler whose return annotation is a union of two events."""
    return ParcelDelivered(parcel_id=event.parcel_id)


def emitted_by(handler: object, event_type: type[Event] = ParcelShipped) -> tuple[type[Event], ...]:
    """What a fresh worker records as emitted by `handler` for `event_type`."""
    worker = Worker("tracking")
    worker.handles(event_type)(handler)  # type: ignore[arg-type]
    (spec,) = worker.handlers
    return spec.emits


class TestHandles:
    """Worker.handles registers one handler per event type."""

    def test_a_decorated_coroutine_is_registered_for_its_event(self) -> None:
        """The handler is recorded with the event it takes."""
        # Given
        worker = Worker("tracking")
        # When
        returned = worker.handles(ParcelShipped)(track)
        # Then
        (spec,) = worker.handlers
        assert (spec.event_type, spec.function) == (ParcelShipped, track)
        assert returned is track
        assert repr(spec) == "<handler track for ParcelShipped>"
        assert repr(worker) == "<Worker tracking handles ['ParcelShipped']>"

    def test_a_second_handler_for_one_event_type_is_refused(self) -> None:
        """Which of two handlers should run is ambiguous, so the second is an error."""
        # Given
        worker = Worker("tracking")
        worker.handles(ParcelShipped)(track)

        async def track_again(event: ParcelShipped, ctx: Context) -> None:
            return None

        # When / Then
        with pytest.raises(ValueError, match="already handles") as caught:
            worker.handles(ParcelShipped)(track_again)
        assert str(caught.value) == ("worker 'tracking' already handles ParcelShipped with track")

    def test_two_versions_of_one_event_may_have_their_own_handlers(self) -> None:
        """Versions are distinct types, each with its handler."""
        # Given
        worker = Worker("tracking")

        async def track_v2(event: ParcelShippedV2, ctx: Context) -> None:
            return None

        # When
        worker.handles(ParcelShipped)(track)
        worker.handles(ParcelShippedV2)(track_v2)
        # Then
        assert [spec.event_type for spec in worker.handlers] == [ParcelShipped, ParcelShippedV2]

    def test_startup_and_shutdown_hooks_are_registered(self) -> None:
        """Hooks are kept in registration order and returned unchanged."""
        # Given
        worker = Worker("tracking")

        async def open_pool(resources: Resources) -> None:
            return None

        async def close_pool(resources: Resources) -> None:
            return None

        # When
        returned = worker.on_startup(open_pool)
        worker.on_shutdown(close_pool)
        # Then
        assert returned is open_pool
        assert worker.startup_hooks == [open_pool]
        assert worker.shutdown_hooks == [close_pool]


class TestEmits:
    """What a handler may emit, read from its return annotation or given explicitly."""

    def test_a_union_return_emits_each_member(self) -> None:
        """`-> A | B` emits A and B."""
        # Given / When / Then
        assert emitted_by(track) == (ParcelDelivered, ParcelLost)

    def test_a_list_return_emits_its_item_type(self) -> None:
        """`-> list[A]` emits A."""

        # Given
        async def handler(event: ParcelShipped, ctx: Context) -> list[ParcelDelivered]:
            return []

        # When / Then
        assert emitted_by(handler) == (ParcelDelivered,)

    def test_a_sequence_of_a_union_emits_every_member(self) -> None:
        """`-> Sequence[A | B]` emits A and B."""

        # Given
        async def handler(
            event: ParcelShipped, ctx: Context
        ) -> Sequence[ParcelDelivered | ParcelLost]:
            return []

        # When / Then
        assert set(emitted_by(handler)) == {ParcelDelivered, ParcelLost}

    def test_an_optional_return_emits_the_event(self) -> None:
        """`-> Optional[A]` and `-> A | None` emit A."""

        # Given
        async def optional(event: ParcelShipped, ctx: Context) -> Optional[ParcelLost]:  # noqa: UP045
            return None

        async def or_none(event: ParcelShipped, ctx: Context) -> ParcelLost | None:
            return None

        # When / Then
        assert emitted_by(optional) == (ParcelLost,)
        assert emitted_by(or_none) == (ParcelLost,)

    def test_a_none_return_emits_nothing(self) -> None:
        """A handler that returns None publishes no follow-on events."""

        # Given
        async def handler(event: ParcelShipped, ctx: Context) -> None:
            return None

        # When / Then
        assert emitted_by(handler) == ()

    def test_a_mixed_return_emits_each_event_once(self) -> None:
        """`-> A | list[A | B] | None` emits A and B, without repeats."""

        # Given
        async def handler(
            event: ParcelShipped, ctx: Context
        ) -> ParcelDelivered | list[ParcelDelivered | ParcelLost] | None:
            return None

        # When
        emitted = emitted_by(handler)
        # Then
        assert sorted(t.__name__ for t in emitted) == ["ParcelDelivered", "ParcelLost"]

    def test_the_event_base_class_is_not_an_emitted_contract(self) -> None:
        """`-> Event` says nothing about which contract goes out."""

        # Given
        async def handler(event: ParcelShipped, ctx: Context) -> Event:
            return ParcelLost(parcel_id="p")

        # When / Then
        assert emitted_by(handler) == ()

    def test_an_unannotated_handler_emits_nothing_declared(self) -> None:
        """Without a return annotation there is nothing to read."""

        # Given
        async def handler(event, ctx):  # type: ignore[no-untyped-def]
            return None

        # When / Then
        assert emitted_by(handler) == ()

    def test_explicit_emits_override_the_annotation(self) -> None:
        """`emits=` is taken as given, whatever the annotation says."""
        # Given
        worker = Worker("tracking")
        # When
        worker.handles(ParcelShipped, emits=[ParcelLost])(track)
        # Then
        (spec,) = worker.handlers
        assert spec.emits == (ParcelLost,)

    def test_explicit_empty_emits_declares_nothing(self) -> None:
        """`emits=[]` states that the handler emits no events."""
        # Given
        worker = Worker("tracking")
        # When
        worker.handles(ParcelShipped, emits=[])(track)
        # Then
        (spec,) = worker.handlers
        assert spec.emits == ()

    def test_an_annotation_that_names_no_event_emits_nothing(self) -> None:
        """A return annotation without events registers the handler, emitting nothing."""

        # Given
        async def handler(event: ParcelShipped, ctx: Context) -> Literal["done"]:
            return "done"

        # When / Then
        assert emitted_by(handler) == ()


class TestLookup:
    """Finding the handler for a delivery."""

    def test_handler_for_finds_by_wire_name_and_version(self) -> None:
        """A delivery's type property and version header select the handler."""
        # Given
        worker = Worker("tracking")
        worker.handles(ParcelShipped)(track)
        # When
        spec = worker.handler_for("ParcelShipped", 1)
        # Then
        assert spec is not None
        assert spec.function is track

    def test_handler_for_answers_none_for_an_unhandled_type_or_version(self) -> None:
        """No handler is no error: the runtime decides what to do with the message."""
        # Given
        worker = Worker("tracking")
        worker.handles(ParcelShipped)(track)
        # When / Then
        assert worker.handler_for("ParcelShipped", 2) is None
        assert worker.handler_for("ParcelLost", 1) is None

    def test_handler_for_routing_key_serves_messages_without_a_type(self) -> None:
        """A message published without `type` is matched by its routing key."""
        # Given
        worker = Worker("tracking")
        worker.handles(ParcelShipped)(track)
        # When
        spec = worker.handler_for_routing_key("parcel.shipped")
        # Then
        assert spec is not None
        assert spec.event_type is ParcelShipped
        assert worker.handler_for_routing_key("parcel.lost") is None


class TestWiring:
    """Worker.wiring(): what `topology check` compares with the file."""

    def test_wiring_lists_handled_and_emitted_events(self) -> None:
        """Each handled event version once, and each emitted event once across handlers."""
        # Given
        worker = Worker("tracking")
        worker.handles(ParcelShipped)(track)

        async def track_v2(event: ParcelShippedV2, ctx: Context) -> ParcelLost:
            return ParcelLost(parcel_id=event.parcel_id)

        worker.handles(ParcelShippedV2)(track_v2)
        # When
        wiring = worker.wiring()
        # Then
        assert wiring == WorkerWiring(
            handles=[
                EventRoute(name="ParcelShipped", routing_key="parcel.shipped"),
                EventRoute(name="ParcelShipped", routing_key="parcel.shipped", version=2),
            ],
            emits=[
                EventRoute(name="ParcelDelivered", routing_key="parcel.delivered"),
                EventRoute(name="ParcelLost", routing_key="parcel.lost"),
            ],
        )

    def test_a_worker_without_handlers_has_empty_wiring(self) -> None:
        """A worker that handles nothing reports nothing."""
        # Given
        worker = Worker("idle")
        # When / Then
        assert worker.wiring() == WorkerWiring(handles=[], emits=[])
