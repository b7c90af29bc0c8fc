"""The `fleet_broker` fixture in fleet's own suite, on the probe worker: what its
waits report when the outcome is not the expected one, and that reading a queue
takes no more than it must.

The module overrides `fleet_topology_file`, as a team's conftest can, to test with
a topology of its own. Both of its exchanges route every key, so each publish
names its exchange. (tests/integration/test_pytest_plugin.py runs the plugin
from the outside, on a project of its own.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.probe_worker import Probe, ProbeSeen
from tests.integration.conftest import PROBE_TOPOLOGY
from workers.pytest_plugin import FleetBroker
from workers.testing import eventually


@pytest.fixture
def fleet_topology_file(tmp_path: Path) -> Path:
    """The probe topology instead of the (absent) project file."""
    path = tmp_path / "probe.yaml"
    path.write_text(PROBE_TOPOLOGY.format(queue_type="classic", extra=""))
    return path


class TestWaitsSayWhatHappenedInstead:
    async def test_a_tap_waiting_for_another_event_lists_what_it_saw(
        self, fleet_broker: FleetBroker
    ) -> None:
        """A tap that never sees the awaited contract names it, and each message it did see."""
        # Given: the probe worker answered one probe
        async with fleet_broker.running("probe"), fleet_broker.tap("seen") as seen:
            await fleet_broker.publish(Probe(probe_id="p-1", amount=3), exchange="probes")
            assert await seen.next(ProbeSeen) == ProbeSeen(probe_id="p-1", amount=3)
            # When: the test waits for a Probe where only ProbeSeen goes
            with pytest.raises(AssertionError) as failed:
                await seen.next(Probe, timeout=0.3)
        # Then
        message = str(failed.value)
        assert message.startswith(
            "timed out after 0.3s waiting for Probe v1 (probe.sent) on exchange 'seen'; "
            "it saw 1 other message(s): ProbeSeen "
        )
        assert message.endswith(" (probe.seen)")

    async def test_a_message_parked_for_another_reason_is_named_with_its_error(
        self, fleet_broker: FleetBroker
    ) -> None:
        """`dead_lettered(reason=...)` fails naming the reason and error it found."""
        async with fleet_broker.running("probe"):
            # Given: a probe the handler refuses (parked as permanent)
            message_id = await fleet_broker.publish(
                Probe(probe_id="p-2", action="reject"), exchange="probes"
            )
            # When
            with pytest.raises(AssertionError) as failed:
                await fleet_broker.dead_lettered("probes", reason="decode")
        # Then
        assert str(failed.value) == (
            f"probes.dead: {message_id} was parked with reason 'permanent' "
            "(this probe is refused), not 'decode'"
        )

    async def test_nothing_parked_is_a_timeout_naming_the_dead_letter_queue(
        self, fleet_broker: FleetBroker
    ) -> None:
        """With no worker running, nothing is parked, and the wait says where it looked."""
        with pytest.raises(
            AssertionError,
            match=r"waiting for a parked message on queue 'probes.dead'; it saw nothing",
        ):
            await fleet_broker.dead_lettered("probes", timeout=0.2)


class TestReadingAQueue:
    async def test_take_leaves_the_messages_after_the_one_it_waited_for(
        self, fleet_broker: FleetBroker
    ) -> None:
        """Messages before the match are taken; those after it stay in the queue."""
        # Given: three answers waiting in `seen`, which nothing consumes
        for probe_id in ("p-1", "p-2", "p-3"):
            await fleet_broker.publish(ProbeSeen(probe_id=probe_id, amount=0), exchange="seen")
        # When
        first = await fleet_broker.take("seen", ProbeSeen)
        # Then
        assert first.probe_id == "p-1"

        async def two_left() -> bool:
            depth = await fleet_broker.depth("seen")
            assert depth == 2, f"{depth} in 'seen'"
            return True

        await eventually(two_left, what="the two others still in 'seen'")

    async def test_a_poison_body_is_parked_as_a_decode_error_with_its_bytes(
        self, fleet_broker: FleetBroker
    ) -> None:
        """A raw body goes out as a plain client would send it, and is parked untouched."""
        async with fleet_broker.running("probe"):
            # When
            message_id = await fleet_broker.publish_body(
                "probes", "probe.sent", b'{"amount": "many"}', type="Probe"
            )
            parked = await fleet_broker.dead_lettered("probes", reason="decode")
        # Then
        assert (parked.message_id, parked.body) == (message_id, b'{"amount": "many"}')
        assert parked.error_type == "InvalidPayload"
        assert parked.attempts == 0


class TestRunningWorkers:
    async def test_an_unknown_worker_is_refused_naming_the_known_ones(
        self, fleet_broker: FleetBroker
    ) -> None:
        """A typo in a worker's name fails before anything runs."""
        with pytest.raises(LookupError, match=r"no worker 'prob' in the topology \(known: probe\)"):
            async with fleet_broker.running("prob"):
                pass

    async def test_the_workers_stop_consuming_when_the_block_ends(
        self, fleet_broker: FleetBroker
    ) -> None:
        """After the block the queue has no consumer: what is published then waits there."""
        # Given
        async with fleet_broker.running("probe"), fleet_broker.tap("seen") as seen:
            await fleet_broker.publish(Probe(probe_id="p-1"), exchange="probes")
            await seen.next(ProbeSeen)
        # When
        await fleet_broker.publish(Probe(probe_id="p-2"), exchange="probes")
        # Then
        assert await fleet_broker.take("probes", Probe) == Probe(probe_id="p-2")
