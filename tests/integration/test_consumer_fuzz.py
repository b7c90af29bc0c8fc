"""Property-based fuzzing of the consumer path against a real worker process.

Hypothesis throws random bodies, property sets and header values (wrong types
in every fleet header included) through a plain AMQP client, and hand-built
content headers no client library writes through a raw socket, at one real
`fleet worker run` on a real broker, its inbox in memory or in PostgreSQL.
Whatever arrives, every message must end processed or parked, by the worker's
own metrics, and every parked one must be in `probes.dead`:

    published == processed + dead-lettered, and nothing in flight, after each batch.

The default run is small (a few hundred messages); the `slow` variants throw
thousands. Figures print with -s.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Broker
from tests.integration.conftest import PROBE_TOPOLOGY, ROOT
from tests.integration.raw_amqp import FLAGS, RawPublisher, long_string, short_string, table
from topology import load
from topology.apply import apply
from workers.runtime import headers as h
from workers.testing import WorkerProcess, eventually_blocking

FLEET_HEADERS = [
    h.VERSION,
    h.CAUSATION_ID,
    h.TIMESTAMP_MS,
    h.TRACEPARENT,
    h.TRACESTATE,
    *h.FAILURE_HEADERS,
    h.ORIGINAL_EXCHANGE,
    h.ORIGINAL_ROUTING_KEY,
    h.UNDECODABLE,
]

# Every value type pika can write into a header table.
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=40),
    st.booleans(),
    st.none(),
    st.decimals(min_value=-1000, max_value=1000, places=2),
    st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(2100, 1, 1)),
    st.binary(max_size=16),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
hostile_headers = st.dictionaries(
    st.sampled_from(FLEET_HEADERS) | st.text(min_size=1, max_size=20), values, max_size=6
)
# Half the messages carry what a well-behaved client sends, so the handler path
# (processing, retries, duplicates) gets as much of the fuzz as the door does.
headers = st.one_of(st.just({}), st.just({h.VERSION: 1}), hostile_headers, hostile_headers)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
actions = st.sampled_from(["ok", "ok", "ok", "fail", "reject", "explode"])
probes = st.fixed_dictionaries(
    {},
    optional={
        "probe_id": st.one_of(st.text(max_size=20), st.text(max_size=20), st.integers()),
        "action": st.one_of(actions, actions, actions, json_values),
        "amount": st.one_of(st.integers(), st.integers(), st.floats(allow_nan=False)),
        "tags": st.lists(st.text(max_size=5), max_size=3) | json_values,
        "extra": json_values,
    },
)


def nested(depth: int) -> bytes:
    return b'{"probe_id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"


# Well-formed probes, each steering the handler: processed, retried then parked,
# refused, or failing outside the handler.
clean_probes = st.fixed_dictionaries(
    {"probe_id": st.text(max_size=20), "action": actions, "amount": st.integers(-(2**63), 2**63)}
)
probe_bodies = st.one_of(clean_probes, probes).map(lambda d: json.dumps(d).encode())
bodies = st.one_of(
    probe_bodies,
    probe_bodies,
    probe_bodies,
    probe_bodies,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.integers(500, 3000).map(nested),
    st.integers(10**20, 10**40).map(lambda n: b'{"amount": %d}' % n),
    st.just(b'{"probe_id": "' + b"x" * 200_000 + b'"}'),
)
short_text = st.none() | st.text(min_size=1, max_size=40)


@dataclass(frozen=True)
class Message:
    """One publish of the fuzz: what pika sends."""

    routing_key: str
    body: bytes = field(repr=False)
    type: str | None
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    content_type: str | None
    priority: int | None

    def __repr__(self) -> str:  # the body can be 200 KB: show its size and start
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("routing_key", "type", "message_id", "correlation_id", "headers")
        )
        return f"Message({fields}, body={self.body[:80]!r}... ({len(self.body)} bytes))"


messages = st.builds(
    Message,
    routing_key=st.sampled_from(["probe.sent", "probe.sent", ""]) | st.text(max_size=30),
    body=bodies,
    type=st.one_of(
        st.just("Probe"),
        st.just("Probe"),
        st.sampled_from([None, "Unknown", "probe", ""]),
        short_text,
    ),
    message_id=short_text,
    correlation_id=short_text,
    headers=headers,
    content_type=st.sampled_from(["application/json", None, "text/plain"]),
    priority=st.none() | st.integers(0, 255),
)

# Content headers only a hand-written client sends: any 64-bit timestamp, short
# strings of any bytes, tables of out-of-range timestamps and non-UTF-8 text.
raw_properties = st.fixed_dictionaries(
    {"message_type": st.sampled_from([b"Probe", b"Probe", b"\xffProbe"]).map(short_string)},
    optional={
        "timestamp": st.integers(0, 2**64 - 1).map(lambda n: struct.pack(">Q", n)),
        "message_id": st.binary(min_size=1, max_size=30).map(short_string),
        "correlation_id": st.binary(max_size=30).map(short_string),
        "headers": st.lists(
            st.tuples(
                st.sampled_from([b"version", b"x-fleet-attempts", b"when", b"note"]),
                st.one_of(
                    st.integers(0, 2**64 - 1).map(lambda n: (b"T", struct.pack(">Q", n))),
                    st.binary(max_size=12).map(lambda b: (b"S", long_string(b))),
                    st.integers(-(2**31), 2**31 - 1).map(lambda n: (b"I", struct.pack(">i", n))),
                ),
            ),
            max_size=4,
        ).map(lambda entries: table([(name, kind, value) for name, (kind, value) in entries])),
    },
)


class Outcomes:
    """What the fuzz published, and what the worker says it did with it (its /metrics),
    checked against the broker's queues."""

    def __init__(self, url: str, metrics_port: int):
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.published = 0

    def depth(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def worker_counts(self) -> dict[str, float]:
        """processed, dead_lettered and in_flight, summed over types and reasons."""
        counts = {"processed": 0.0, "dead_lettered": 0.0, "in_flight": 0.0}
        text = httpx.get(self.metrics_url, timeout=5).text
        for family in text_string_to_metric_families(text):
            name = family.name.removeprefix("fleet_").removeprefix("messages_")
            if name in counts:
                counts[name] += sum(
                    s.value for s in family.samples if s.name.endswith(("_total", "in_flight"))
                )
        return counts

    def settled(self) -> bool:
        """Whether every published message ended, none in flight (an AssertionError
        saying what the worker reports, if not yet)."""
        counts = self.worker_counts()
        done = counts["processed"] + counts["dead_lettered"]
        if done > self.published:  # never true later either: fail at once, not "not yet"
            pytest.fail(f"{done} settled of {self.published} published")
        says = f"{self.published} published, the worker says {counts}"
        assert done == self.published, says
        assert counts["in_flight"] == 0, says
        return True

    def publish(self, message: Message) -> None:
        self.channel.basic_publish(
            "probes",
            message.routing_key,
            message.body,
            pika.BasicProperties(
                content_type=message.content_type,
                delivery_mode=2,
                priority=message.priority,
                type=message.type,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                headers=message.headers,
            ),
            mandatory=True,
        )
        self.published += 1

    def wait_settled(self, seconds: float = 60.0) -> None:
        """Until every published message ended (a bound on failure, not a measurement)."""
        eventually_blocking(
            self.settled,
            what="every published message processed or parked",
            timeout=seconds,
            interval=0.05,
            pause=self.connection.sleep,  # keeps the pika connection serviced meanwhile
        )
        # Every parked message is really in the dead-letter queue.
        assert self.depth("probes.dead") == self.worker_counts()["dead_lettered"]

    def close(self) -> None:
        self.connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=["memory", "postgres"])
def fuzzed(
    request: pytest.FixtureRequest, broker: Broker, tmp_path: Path
) -> Iterator[tuple[WorkerProcess, Outcomes]]:
    """The probe worker with its inbox in memory, or in PostgreSQL (group commit)."""
    path = tmp_path / "probe.yaml"
    path.write_text(PROBE_TOPOLOGY.format(queue_type="classic", extra=""))
    asyncio.run(apply(load(path), broker.amqp_url, management_url=broker.management_url))
    args = []
    if request.param == "postgres":
        args = ["--database-url", request.getfixturevalue("database")]
    port = free_port()
    process = WorkerProcess(
        "probe",
        topology_file=path,
        url=broker.amqp_url,
        pythonpath=[ROOT],
        args=[*args, "--metrics-port", str(port)],
    )
    with process:
        outcomes = Outcomes(broker.amqp_url, port)
        try:
            yield process, outcomes
        finally:
            outcomes.close()


def assert_nothing_lost(process: WorkerProcess, outcomes: Outcomes, name: str) -> None:
    """Stop the worker and check its own count against the broker's."""
    process.stop()
    [stopped] = process.events("worker.stopped")
    [inbox] = process.events("worker.inbox")
    print(
        f"\n[{name} inbox={inbox['kind']}] published={outcomes.published} "
        f"processed={stopped['processed']} "
        f"dead_lettered={stopped['dead_lettered']} retried={stopped['retried']} "
        f"duplicates={stopped['duplicates']} "
        f"internal={len(process.events('message.internal_error'))}"
    )
    assert stopped["drained"]
    assert stopped["requeued"] == 0
    assert stopped["processed"] + stopped["dead_lettered"] == outcomes.published
    assert outcomes.depth("probes") == 0
    assert not process.events("broker.connection_lost")


def fuzz_client(outcomes: Outcomes, examples: int) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(batch=st.lists(messages, min_size=5, max_size=40))
    def publish_batches(batch: list[Message]) -> None:
        for message in batch:
            outcomes.publish(message)
        outcomes.wait_settled()

    return publish_batches


def fuzz_raw(url: str, outcomes: Outcomes, examples: int) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(
        batch=st.lists(
            st.tuples(raw_properties, st.sampled_from([b'{"probe_id": "raw"}', b"{}", b"\xff"])),
            min_size=5,
            max_size=30,
        )
    )
    def publish_batches(batch: list[tuple[dict[str, bytes], bytes]]) -> None:
        with RawPublisher(url) as raw:
            for properties, body in batch:
                assert set(properties) <= set(FLAGS)
                raw.publish("probes", "probe.sent", body, properties)
                outcomes.published += 1
        outcomes.wait_settled()

    return publish_batches


class TestConsumerFuzz:
    @pytest.mark.parametrize("examples", [30, pytest.param(400, marks=pytest.mark.slow, id="full")])
    def test_random_bodies_properties_and_headers_all_end_processed_or_parked(
        self, fuzzed: tuple[WorkerProcess, Outcomes], examples: int
    ) -> None:
        """published = processed + dead-lettered, zero in flight, the connection never lost."""
        process, outcomes = fuzzed
        fuzz_client(outcomes, examples)()
        assert_nothing_lost(process, outcomes, f"fuzz-client examples={examples}")

    @pytest.mark.parametrize("examples", [25, pytest.param(300, marks=pytest.mark.slow, id="full")])
    def test_hand_built_content_headers_all_end_processed_or_parked(
        self, broker: Broker, fuzzed: tuple[WorkerProcess, Outcomes], examples: int
    ) -> None:
        """Timestamps, short strings and tables no decoder reads: still nothing lost."""
        process, outcomes = fuzzed
        fuzz_raw(broker.amqp_url, outcomes, examples)()
        assert_nothing_lost(process, outcomes, f"fuzz-raw examples={examples}")
