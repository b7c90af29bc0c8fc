"""The fast path's fence: aiormq's internals it drives still have the shape it was
written against (this fails first when an aiormq release changes them), the gate
turns it off on request or on untested versions, and the same runtime then works on
aiormq's public API alone."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiormq
import aiormq.connection
import pytest
from aiormq.abc import AbstractChannel

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher, order
from workers.runtime import fastpath
from workers.runtime.connection import connect, open_channels
from workers.runtime.fastpath import routing
from workers.runtime.fastpath.frames import BufferedFrameReceiver
from workers.runtime.fastpath.sending import FrameSender
from workers.runtime.fastpath.wire import publish_frames_for
from workers.testing import WorkerProcess, collect


@pytest.fixture
async def channel(broker: Broker) -> AsyncIterator[AbstractChannel]:
    connection = await connect(broker.amqp_url, name="test-fastpath")
    try:
        publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield await publish.get_underlay_channel()
    finally:
        await connection.close()


@pytest.fixture
def gate() -> Iterator[None]:
    """The gate decides once per process: let each test decide afresh."""
    fastpath.enabled.cache_clear()
    yield
    fastpath.enabled.cache_clear()


class TestAiormqsInternals:
    async def test_the_confirm_bookkeeping_has_the_shape_the_sender_drives(
        self, channel: AbstractChannel
    ) -> None:
        """Sequence numbers, confirm futures by tag, returns by message id, the lock."""
        internals = vars(channel)
        assert isinstance(channel.delivery_tag, int)  # type: ignore[attr-defined]
        assert isinstance(channel.confirmations, dict)  # type: ignore[attr-defined]
        assert isinstance(channel.message_id_delivery_tag, dict)  # type: ignore[attr-defined]
        assert isinstance(internals["_Channel__lock"], asyncio.Lock)
        assert isinstance(channel.write_queue, asyncio.Queue)  # type: ignore[attr-defined]
        assert FrameSender.on(channel) is not None

    async def test_a_publish_queued_by_the_sender_is_confirmed_through_aiormqs_bookkeeping(
        self, channel: AbstractChannel
    ) -> None:
        """The confirm future the sender registers is the one aiormq's reader resolves."""
        # Given
        sender = FrameSender.on(channel)
        assert sender is not None
        frames = publish_frames_for(
            b"{}",
            exchange="",
            routing_key="nowhere",
            properties=aiormq.spec.Basic.Properties(message_id="m-shape"),
            mandatory=False,
            channel=sender.number,
            max_body_frame=sender.max_body_frame,
        )
        before = channel.delivery_tag  # type: ignore[attr-defined]
        # When
        confirmation = await asyncio.wait_for(sender.send(frames, "m-shape"), 10)
        # Then
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        assert channel.delivery_tag == before + 1  # type: ignore[attr-defined]
        assert channel.confirmations == {}  # type: ignore[attr-defined]
        assert "m-shape" not in channel.message_id_delivery_tag  # type: ignore[attr-defined]

    def test_the_frame_receiver_is_still_the_class_fleet_reads_frames_for(self) -> None:
        """aiormq looks its FrameReceiver up by name when it connects, and fleet's
        subclass takes its place; its constructor and get_frame are what fleet overrides."""
        receiver = aiormq.connection.FrameReceiver
        assert receiver in (BufferedFrameReceiver, BufferedFrameReceiver.__mro__[1])
        assert callable(receiver.get_frame)

    async def test_a_consume_channels_deliveries_go_straight_from_the_frame_buffer(
        self, broker: Broker
    ) -> None:
        """The route finds what it needs on aiormq's channel and connection (the frame
        queue, consumers, the watchdog's last-frame time), and every delivery of a
        consume channel runs in a task the route started, none lost."""
        # Given
        connection = await connect(broker.amqp_url, name="test-routing")
        try:
            channels = await open_channels(connection, prefetch=50)
            assert connection.transport is not None
            raw: Any = connection.transport.connection
            receiver = routing._receivers[raw]
            route = receiver.routes[channels.consume.number]
            declared = await channels.consume.queue_declare("", exclusive=True)
            queue = declared.queue or ""
            routed: list[bool] = []
            done = asyncio.Event()
            last_frame_before = raw._Connection__last_frame_time

            async def consume(message: aiormq.abc.DeliveredMessage) -> None:
                routed.append(asyncio.current_task() in route.tasks)
                assert isinstance(message.delivery, aiormq.spec.Basic.Deliver)
                await channels.consume.basic_ack(message.delivery.delivery_tag or 0)
                if len(routed) == 200:
                    done.set()

            await channels.consume.basic_consume(queue, consume)
            await asyncio.sleep(0.2)  # ConsumeOk seen: later deliveries can be routed
            # When
            for n in range(200):
                await channels.publish.basic_publish(
                    b"{}",
                    routing_key=queue,
                    properties=aiormq.spec.Basic.Properties(message_id=f"m-{n}"),
                )
            await asyncio.wait_for(done.wait(), 20)
            # Then
            assert all(routed), f"{routed.count(False)} of 200 went aiormq's way"
            assert raw._Connection__last_frame_time > last_frame_before
        finally:
            await connection.close()
        assert channels.consume.number not in receiver.routes  # unrouted when it closed


class TestTheGate:
    def test_the_switch_turns_it_off(self, gate: None, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(fastpath.SWITCH, "0")
        assert fastpath.enabled() is False

    def test_an_untested_aiormq_turns_it_off(
        self, gate: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv(fastpath.SWITCH, raising=False)
        real = importlib.metadata.version
        monkeypatch.setattr(
            importlib.metadata,
            "version",
            lambda name: "7.9.0" if name == "aiormq" else real(name),
        )
        assert fastpath.untested_versions() == {"aiormq": "7.9.0"}
        assert fastpath.enabled() is False

    def test_the_installed_versions_are_the_tested_ones(self, gate: None) -> None:
        """pyproject pins the same ranges, so this holds in every fleet environment."""
        assert fastpath.untested_versions() == {}


class TestOnThePublicApi:
    async def test_a_worker_without_the_fast_path_handles_retries_and_parks(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """FLEET_AMQP_FASTPATH=0: aiormq's own receiver and basic_publish, same outcomes."""
        # Given
        path, _ = await echo_topology()
        process = WorkerProcess(
            "echo",
            topology_file=path,
            url=broker.amqp_url,
            pythonpath=[ROOT],
            env={fastpath.SWITCH: "0"},
        )
        with process:
            # When
            pika_publisher.publish("orders", "order.placed", order("o-1"), message_id="ok")
            pika_publisher.publish("orders", "order.placed", b"{not json", message_id="bad")
            [answer] = await collect(broker.amqp_url, "answers", 1)
            [parked] = await collect(broker.amqp_url, "echo.dead", 1)
        # Then
        assert answer.json()["order_id"] == "o-1"
        assert parked.message_id == "bad"
        assert process.events("fastpath.off")
