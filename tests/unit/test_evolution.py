"""Upcasters and downcasters: typed functions between neighbour versions of one
contract, checked when declared, chained to reach the version a handler takes."""

from __future__ import annotations

import pytest

from contracts import Event, Evolution
from contracts.evolution import EvolutionError


class ThingV1(Event, frozen=True, kw_only=True):
    __wire_name__ = "Thing"
    __routing_key__ = "thing.made"
    a: str


class ThingV2(Event, frozen=True, kw_only=True):
    __wire_name__ = "Thing"
    __version__ = 2
    __routing_key__ = "thing.made"
    a: str
    b: int = 0


class ThingV3(Event, frozen=True, kw_only=True):
    __wire_name__ = "Thing"
    __version__ = 3
    __routing_key__ = "thing.made"
    a: str
    b: int
    c: bool = False


class Other(Event, frozen=True, kw_only=True):
    __routing_key__ = "other.made"
    a: str


def chained() -> Evolution:
    evolution = Evolution()

    @evolution.upcaster
    def v2(old: ThingV1) -> ThingV2:
        return ThingV2(a=old.a, b=1)

    @evolution.upcaster
    def v3(old: ThingV2) -> ThingV3:
        return ThingV3(a=old.a, b=old.b + 1)

    @evolution.downcaster
    def back_to_v2(new: ThingV3) -> ThingV2:
        return ThingV2(a=new.a, b=new.b)

    return evolution


class TestDeclaring:
    def test_an_upcaster_goes_from_a_version_to_the_next_of_the_same_contract(self) -> None:
        evolution = Evolution()

        def skipping(old: ThingV1) -> ThingV3:
            return ThingV3(a=old.a, b=0)

        def renaming(old: ThingV1) -> Other:
            return Other(a=old.a)

        def backwards(old: ThingV2) -> ThingV1:
            return ThingV1(a=old.a)

        with pytest.raises(
            EvolutionError, match="goes from v1 to v3: an upcaster goes one version up"
        ):
            evolution.upcaster(skipping)
        with pytest.raises(EvolutionError, match="turns Thing into Other"):
            evolution.upcaster(renaming)
        with pytest.raises(EvolutionError, match="one version up"):
            evolution.upcaster(backwards)

    def test_a_function_without_contract_annotations_is_refused(self) -> None:
        def untyped(old):  # type: ignore[no-untyped-def]
            return old

        with pytest.raises(EvolutionError, match="must take one contract and return one"):
            Evolution().upcaster(untyped)

    def test_a_downcaster_goes_one_version_down(self) -> None:
        def up(new: ThingV1) -> ThingV2:
            return ThingV2(a=new.a)

        with pytest.raises(EvolutionError, match="one version down"):
            Evolution().downcaster(up)


class TestChains:
    def test_a_v1_message_reaches_a_v3_handler_through_every_upcaster(self) -> None:
        evolution = chained()
        steps = evolution.route("Thing", 1, [3])
        assert steps is not None
        event: Event = ThingV1(a="x")
        for step in steps:
            event = step(event)
        assert event == ThingV3(a="x", b=2)

    def test_the_nearest_newer_version_wins_then_the_nearest_older(self) -> None:
        evolution = chained()
        assert [s.target.__version__ for s in evolution.route("Thing", 1, [2, 3]) or []] == [2]
        assert [s.target.__version__ for s in evolution.route("Thing", 3, [1, 2]) or []] == [2]

    def test_a_broken_chain_is_no_route(self) -> None:
        evolution = chained()
        assert evolution.route("Thing", 3, [1]) is None  # no downcaster v2 → v1
        assert evolution.route("Thing", 4, [3]) is None  # nothing knows v4
        assert evolution.path("Thing", 2, 2) == []

    def test_a_step_returning_something_else_fails_loudly(self) -> None:
        evolution = Evolution()

        @evolution.upcaster
        def wrong(old: ThingV1) -> ThingV2:
            return old  # type: ignore[return-value]

        step = evolution.up_from("Thing", 1)
        assert step is not None
        with pytest.raises(TypeError, match="returned ThingV1, not ThingV2"):
            step(ThingV1(a="x"))
