"""Fault events: with `faults:` in its topology entry, a worker announces each message
it parks as a typed Fault[<contract>], so a choreography can compensate."""

from __future__ import annotations

from pathlib import Path

from contracts import Fault, decode
from tests.conftest import Broker
from tests.fixtures.probe_worker import Probe
from tests.integration.conftest import ROOT, PikaPublisher
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect, queue_depth


def probe_worker(broker: Broker, path: Path) -> WorkerProcess:
    return WorkerProcess("probe", topology_file=path, url=broker.amqp_url, pythonpath=[ROOT])


class TestFaultEvents:
    async def test_a_parked_message_is_announced_with_its_ids_reason_and_the_message(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """A rejected Probe: parked, and a Fault[Probe] carries its ids, reason and body."""
        # Given
        path = await probe_topology(faults=True)
        with probe_worker(broker, path):
            # When
            pika_publisher.publish(
                "probes",
                "probe.sent",
                {"probe_id": "p-1", "action": "reject"},
                type="Probe",
                message_id="m-1",
                correlation_id="saga-1",
                headers={},
            )
            [parked] = await collect(broker.amqp_url, "probes.dead", 1)
            [announced] = await collect(broker.amqp_url, "seen", 1)
        # Then
        assert parked.message_id == "m-1"
        assert announced.type == "Fault[Probe]"
        assert announced.routing_key == "fault.probe.sent"
        assert announced.correlation_id == "saga-1"
        assert announced.headers[h.CAUSATION_ID] == "m-1"
        fault = decode(Fault.of(Probe), announced.body)
        assert (fault.message_type, fault.message_id, fault.correlation_id) == (
            "Probe",
            "m-1",
            "saga-1",
        )
        assert (fault.reason, fault.error_type, fault.error) == (
            "permanent",
            "Reject",
            "this probe is refused",
        )
        assert (fault.worker, fault.queue) == ("probe", "probes")
        assert fault.message == Probe(probe_id="p-1", action="reject")

    async def test_a_message_that_never_decoded_is_announced_without_it(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """A Probe whose body is no JSON: the fault says so, with no message."""
        # Given
        path = await probe_topology(faults=True)
        with probe_worker(broker, path):
            # When
            pika_publisher.publish(
                "probes", "probe.sent", b"{not json", type="Probe", message_id="m-2", headers={}
            )
            [announced] = await collect(broker.amqp_url, "seen", 1)
        # Then
        fault = decode(Fault.of(Probe), announced.body)
        assert (fault.reason, fault.message) == ("decode", None)

    async def test_a_message_of_a_type_the_worker_does_not_handle_is_parked_unannounced(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Of a type it does not know, a worker cannot say what it was: no fault."""
        # Given
        path = await probe_topology(faults=True)
        with probe_worker(broker, path):
            # When
            pika_publisher.publish(
                "probes", "probe.sent", {}, type="Stranger", message_id="m-3", headers={}
            )
            pika_publisher.publish(
                "probes", "probe.sent", {"probe_id": "after"}, type="Probe", headers={}
            )
            [parked] = await collect(broker.amqp_url, "probes.dead", 1)
            received = await collect(broker.amqp_url, "seen", 1)
            # A fault would be published before the parked copy: it would be there now.
            left = await queue_depth(broker.amqp_url, "seen")
        # Then
        assert parked.headers[h.REASON] == "unknown-type"
        assert [m.type for m in received] == ["ProbeSeen"]
        assert left == 0

    async def test_without_faults_in_the_topology_nothing_is_announced(
        self, broker: Broker, probe_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Fault events are opt-in per worker."""
        # Given
        path = await probe_topology(faults=False)
        with probe_worker(broker, path):
            # When
            pika_publisher.publish(
                "probes", "probe.sent", {"action": "reject"}, type="Probe", headers={}
            )
            pika_publisher.publish(
                "probes", "probe.sent", {"probe_id": "after"}, type="Probe", headers={}
            )
            await collect(broker.amqp_url, "probes.dead", 1)
            received = await collect(broker.amqp_url, "seen", 1)
            left = await queue_depth(broker.amqp_url, "seen")
        # Then
        assert [m.type for m in received] == ["ProbeSeen"]
        assert left == 0
