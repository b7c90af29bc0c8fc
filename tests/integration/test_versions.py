"""Contract versions side by side on a real broker: a v1 producer and a v2 producer,
one worker that handles v2 and one that handles v1, message by message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from topology import load
from topology.apply import apply
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect

TOPOLOGY = """
exchanges: {signups: {}, seen: {}}
queues:
  new: {type: classic, bind: [{exchange: signups, routing_key: "#"}]}
  old: {type: classic, bind: [{exchange: signups, routing_key: "#"}]}
  seen: {type: classic, bind: [{exchange: seen, routing_key: "#"}]}
workers:
  new: {module: tests.fixtures.versioned_workers, queue: new, publish_to: seen}
  old: {module: tests.fixtures.versioned_workers, queue: old, publish_to: seen}
"""

#: (message id, type, version header, body): what the two producers send.
SENT = [
    ("a", "Signup", 1, {"customer_id": "a"}),
    ("b", "Signup", 2, {"customer_id": "b", "email": "b@shop.test"}),
    ("c", "Signup", 3, {"customer_id": "c", "email": "c@shop.test", "phone": "1"}),
    ("explode", "Signup", 1, {"customer_id": "explode"}),
    ("n1", "Note", 1, {"text": "first"}),
    ("n2", "Note", 2, {"text": "second", "author": "ada"}),
]


class TestTwoProducersTwoWorkers:
    async def test_each_message_reaches_each_worker_in_the_version_it_handles_or_is_parked(
        self, broker: Broker, tmp_path: Path
    ) -> None:
        """Upcast for `new`, downcast for `old` where a downcaster exists, else parked."""
        # Given
        path = tmp_path / "fleet.yaml"
        path.write_text(TOPOLOGY)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        workers = [
            WorkerProcess(name, topology_file=path, url=broker.amqp_url, pythonpath=[ROOT])
            for name in ("new", "old")
        ]
        publisher = PikaPublisher(broker.amqp_url)
        for worker in workers:
            worker.start()
        try:
            # When
            for message_id, type_name, version, body in SENT:
                routing_key = "signup.made" if type_name == "Signup" else "note.made"
                publisher.publish(
                    "signups", routing_key, json.dumps(body), type=type_name,
                    message_id=message_id, headers={h.VERSION: version},
                )  # fmt: skip
            seen = await collect(broker.amqp_url, "seen", 8)
            new_dead = await collect(broker.amqp_url, "new.dead", 2)
            old_dead = await collect(broker.amqp_url, "old.dead", 2)
        finally:
            for worker in workers:
                worker.stop()
            publisher.close()
        # Then: what each worker saw, by the message that caused it
        saw = {
            (m.json()["worker"], m.headers[h.CAUSATION_ID]): (
                m.json()["version"],
                m.json()["detail"],
            )
            for m in seen
        }
        assert saw == {
            ("new", "a"): (2, "a@example.com"),  # upcast
            ("new", "b"): (2, "b@shop.test"),
            ("new", "n1"): (2, "someone"),  # upcast, the new field's default
            ("new", "n2"): (2, "ada"),
            ("old", "a"): (1, "a"),
            ("old", "b"): (1, "b"),  # downcast
            ("old", "explode"): (1, "explode"),  # v1 as it is: no upcaster runs
            ("old", "n1"): (1, "first"),
        }
        reasons = {("new", m.message_id): m.headers[h.REASON] for m in new_dead} | {
            ("old", m.message_id): m.headers[h.REASON] for m in old_dead
        }
        assert reasons == {
            ("new", "c"): "version-unsupported",  # newer than any it knows
            ("new", "explode"): "upcast-failed",
            ("old", "c"): "version-unsupported",
            ("old", "n2"): "version-unsupported",  # Note has no downcaster
        }
        errors = {m.message_id: m.headers[h.ERROR_MESSAGE] for m in old_dead}
        assert errors["n2"] == (
            "worker 'old' handles Note v1, and no upcaster or downcaster leads there from v2"
        )
        [failed] = [m for m in new_dead if m.message_id == "explode"]
        assert failed.headers[h.ERROR_TYPE] == "ValueError"
        assert "no email can be made up" in failed.headers[h.ERROR_MESSAGE]


@pytest.mark.parametrize("worker", ["new", "old"])
def test_the_worker_declarations_know_their_versions(worker: str) -> None:
    """Each worker's handled versions, as the stage looks them up."""
    from tests.fixtures import versioned_workers

    declared = getattr(versioned_workers, worker)
    versions = {name: sorted(declared.versions_handled(name)) for name in ("Signup", "Note")}
    assert versions == ({"Signup": [2], "Note": [2]} if worker == "new" else
                        {"Signup": [1], "Note": [1]})  # fmt: skip
