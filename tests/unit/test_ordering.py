"""Per-key order (`order_by`): how the topology writes it and each mistake as one line
naming its path; how a delivery's key is read; and the lines a key's deliveries wait in.

The broker-side proof (many keys, random durations, acks, failover) is in
tests/integration/test_ordering.py.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures import order_workers
from tests.unit.test_delivery import delivered
from tests.unit.test_topology_load import problems_of
from topology import loads
from topology.check import check_references
from topology.order import OrderBy, parse_order_by
from workers.cli import cli
from workers.errors import WorkerError
from workers.runtime.ordering import KeyLines, key_reader, order_problem, unkeyed_contracts
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown
from workers.worker import Worker

BASE = (
    "exchanges: {orders: {}}\n"
    "queues:\n  pay: {bind: [{exchange: orders}]}\n"
    "workers:\n  pay:\n    module: m\n    queue: pay\n"
)


def warnings_of(text: str) -> list[str]:
    return [str(p) for p in check_references(loads(text)) if p.severity == "warning"]


class TestDeclaration:
    def test_a_field_and_a_header(self) -> None:
        assert parse_order_by("order_id") == OrderBy("field", "order_id")
        assert parse_order_by("header:x-tenant") == OrderBy("header", "x-tenant")
        assert str(parse_order_by("header:x-tenant")) == "header:x-tenant"

    def test_the_worker_keeps_it(self) -> None:
        assert loads(BASE + "    order_by: order_id\n").workers["pay"].order_by == "order_id"
        assert loads(BASE).workers["pay"].order_by is None

    def test_an_empty_value_is_refused(self) -> None:
        assert problems_of(BASE + "    order_by: ''\n") == [
            "workers.pay.order_by: empty: name a top-level field of the event "
            "(order_by: order_id) or a header (order_by: header:x-tenant)"
        ]

    def test_a_header_prefix_without_a_name_is_refused(self) -> None:
        assert problems_of(BASE + "    order_by: 'header:'\n") == [
            "workers.pay.order_by: 'header:' names no header: write header:x-tenant"
        ]

    def test_a_nested_path_is_refused(self) -> None:
        assert problems_of(BASE + "    order_by: customer.id\n") == [
            "workers.pay.order_by: 'customer.id' is not a field name: order_by takes a "
            "top-level field of the event (order_by: order_id) or a header "
            "(order_by: header:x-tenant)"
        ]

    def test_a_value_that_is_no_text_is_refused(self) -> None:
        assert problems_of(BASE + "    order_by: 7\n") == [
            "workers.pay.order_by: expected 'str | null', got 'int'"
        ]

    def test_replicas_without_a_single_active_consumer_are_warned_about(self) -> None:
        text = BASE + "    order_by: order_id\n    replicas: 3\n"
        assert warnings_of(text) == [
            "warning: workers.pay.order_by: order holds within each process; with "
            "replicas: 3 two processes may take messages of one key at once: declare the "
            "queue with arguments: {x-single-active-consumer: true}, or spread keys over a "
            "super stream's partitions"
        ]

    def test_replicas_on_a_single_active_consumer_queue_are_fine(self) -> None:
        text = BASE.replace(
            "{bind: [{exchange: orders}]}",
            "{bind: [{exchange: orders}], arguments: {x-single-active-consumer: true}}",
        )
        assert warnings_of(text + "    order_by: order_id\n    replicas: 3\n") == []

    def test_concurrency_one_is_no_mistake(self) -> None:
        assert warnings_of(BASE + "    order_by: order_id\n    concurrency: 1\n") == []


class TestAgainstTheCode:
    def spec(self, order_by: str) -> Any:
        return loads(BASE + f"    order_by: '{order_by}'\n").workers["pay"]

    def test_a_field_of_a_handled_contract_is_fine(self) -> None:
        assert order_problem("pay", self.spec("key"), order_workers.ordered) is None

    def test_a_field_no_handled_contract_has_is_refused_with_their_fields(self) -> None:
        problem = order_problem("pay", self.spec("order_id"), order_workers.ordered)
        assert str(problem) == (
            "workers.pay.order_by: no contract worker 'pay' handles has a field 'order_id' "
            "(their fields: fail_times, fail_until_retried, key, ms, seq); for a header "
            "write header:order_id"
        )

    def test_a_contract_without_the_field_is_named_as_unordered(self) -> None:
        assert unkeyed_contracts(self.spec("key"), order_workers.ordered) == ["Note v1"]
        assert unkeyed_contracts(self.spec("header:x-tenant"), order_workers.ordered) == []

    def test_a_header_is_not_checked_against_contracts(self) -> None:
        assert order_problem("pay", self.spec("header:x-tenant"), order_workers.ordered) is None

    def test_batch_handlers_are_refused(self) -> None:
        class Batched:  # a handler declared with Worker.handles_batch
            event_type = order_workers.Step
            batch = object()

        class BatchWorker(Worker):
            @property
            def handlers(self) -> list[Any]:
                return [Batched()]

        problem = order_problem("pay", self.spec("key"), BatchWorker("pay"))
        assert str(problem) == (
            "workers.pay.order_by: the handler of Step takes its events in batches "
            "(handles_batch), which mixes keys in one call: per-key order is not kept for "
            "batches; drop order_by or handle them one by one"
        )


class TestKeys:
    @pytest.mark.parametrize(
        ("body", "key"),
        [
            (b'{"order_id": "o-1", "lines": [{"order_id": "inner"}]}', "o-1"),
            (b'{"order_id": 42}', "42"),
            (b'{"order_id": ""}', None),
            (b'{"order_id": null}', None),
            (b'{"other": 1}', None),
            (b'{"order_id": true}', None),
            (b'{"order_id": 1.5}', None),
            (b'{"order_id": {"id": 1}}', None),
            (b'["o-1"]', None),
            (b"{not json", None),
            (b"", None),
        ],
    )
    def test_a_field_is_text_or_a_whole_number(self, body: bytes, key: str | None) -> None:
        assert key_reader(OrderBy("field", "order_id"))(delivered(body)) == key

    @pytest.mark.parametrize(
        ("headers", "key"),
        [
            ({"x-tenant": "t-1"}, "t-1"),
            ({"x-tenant": b"t-2"}, "t-2"),
            ({"x-tenant": 7}, "7"),
            ({"x-tenant": ""}, None),
            ({"x-tenant": True}, None),
            ({"x-tenant": [1]}, None),
            ({}, None),
            (None, None),
        ],
    )
    def test_a_header_is_text_or_a_whole_number(
        self, headers: dict[str, Any] | None, key: str | None
    ) -> None:
        message = delivered(b"{}", headers=headers)
        assert key_reader(OrderBy("header", "x-tenant"))(message) == key


def lines_by_body() -> KeyLines:
    return KeyLines(key_reader(OrderBy("field", "k")))


def keyed(key: str) -> Any:
    return delivered(b'{"k": "%s"}' % key.encode())


class TestLines:
    async def test_a_keys_deliveries_run_one_after_another_in_arrival_order(self) -> None:
        lines, order, running, overlaps = lines_by_body(), [], set(), []

        async def run(key: str, seq: int) -> None:
            turn = lines.join(keyed(key))
            assert turn is not None
            async with turn:
                if key in running:
                    overlaps.append((key, seq))
                running.add(key)
                await asyncio.sleep(random.uniform(0, 0.005))
                order.append((key, seq))
                running.discard(key)

        rng = random.Random(7)
        plan = [(f"k{rng.randrange(10)}", i) for i in range(300)]
        await asyncio.gather(*(run(k, i) for k, i in plan))
        assert overlaps == []
        for key in {k for k, _ in plan}:
            assert [i for k, i in order if k == key] == [i for k, i in plan if k == key]
        assert (lines.keys, lines.waiting) == (0, 0)

    async def test_other_keys_do_not_wait(self) -> None:
        lines = lines_by_body()
        slow = lines.join(keyed("a"))
        other = lines.join(keyed("b"))
        assert slow is not None
        assert other is not None
        async with slow:
            await asyncio.wait_for(other.__aenter__(), 0.1)  # not held by "a"
            await other.__aexit__(None, None, None)

    async def test_a_delivery_without_a_key_joins_no_line(self) -> None:
        assert lines_by_body().join(delivered(b'{"other": 1}')) is None

    async def test_a_cancelled_wait_passes_the_line_on_only_when_the_one_before_is_done(
        self,
    ) -> None:
        lines = lines_by_body()
        first, second, third = (lines.join(keyed("a")) for _ in range(3))
        assert first is not None
        assert second is not None
        assert third is not None
        await first.__aenter__()
        waiting = asyncio.create_task(second.__aenter__())
        await asyncio.sleep(0)
        assert lines.waiting == 1
        waiting.cancel()  # the channel closed under the second
        with pytest.raises(asyncio.CancelledError):
            await waiting
        entered = asyncio.create_task(third.__aenter__())
        await asyncio.sleep(0.01)
        assert not entered.done()  # the first still runs: the third must not
        await first.__aexit__(None, None, None)
        await asyncio.wait_for(entered, 0.1)
        await third.__aexit__(None, None, None)
        assert (lines.keys, lines.waiting) == (0, 0)


CHECKED = """
exchanges: {steps: {}}
queues: {steps: {bind: [{exchange: steps, routing_key: "#"}]}}
workers:
  ordered: {module: tests.fixtures.order_workers, queue: steps, order_by: order_id}
"""


class TestRefusals:
    async def test_the_worker_refuses_to_start_on_a_field_no_contract_has(self) -> None:
        settings = WorkerSettings.from_topology(loads(CHECKED), "ordered", "amqp://nowhere:1/")
        with pytest.raises(WorkerError) as refused:
            await run_worker(settings, Shutdown())
        assert str(refused.value) == (
            "workers.ordered.order_by: no contract worker 'ordered' handles has a field "
            "'order_id' (their fields: fail_times, fail_until_retried, key, ms, seq); for a "
            "header write header:order_id"
        )

    def test_topology_check_names_it(self, tmp_path: Any) -> None:
        path = tmp_path / "fleet.yaml"
        path.write_text(CHECKED)
        result = CliRunner().invoke(cli, ["topology", "check", "--file", str(path)])
        assert result.exit_code == 1, result.output
        assert (
            "error: workers.ordered.order_by: no contract worker 'ordered' handles has a field "
            "'order_id'" in result.output
        )
        path.write_text(CHECKED.replace("order_id", "key"))
        result = CliRunner().invoke(cli, ["topology", "check", "--file", str(path)])
        assert result.exit_code == 0, result.output
