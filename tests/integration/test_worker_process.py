"""A real `fleet worker run` process against a real broker: typed handling,
follow-on events with saga ids, competing consumers, graceful shutdown, and
poison messages parked with their reasons."""

from __future__ import annotations

import signal
from collections import Counter
from urllib.parse import quote

import pytest

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher, order
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect, queue_depth, rabbitmqctl


def worker(broker: Broker, path: object, **kwargs: object) -> WorkerProcess:
    return WorkerProcess(
        "echo",
        topology_file=path,
        url=broker.amqp_url,  # type: ignore[arg-type]
        pythonpath=[ROOT],
        **kwargs,
    )  # type: ignore[arg-type]


class TestHandling:
    async def test_a_plain_pika_message_reaches_the_handler_and_its_follow_on_carries_saga_ids(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """An event from any AMQP client is decoded and its follow-on is published with
        the same correlation id and the cause's id as causation id."""
        path, _ = await echo_topology()
        with worker(broker, path):
            pika_publisher.publish(
                "orders", "order.placed", order("o-1"), message_id="m-1", correlation_id="saga-1"
            )
            [answer] = await collect(broker.amqp_url, "answers", 1)
        assert answer.type == "StockRejected"
        assert answer.json()["order_id"] == "o-1"
        assert answer.json()["sku"] == "m-1"  # the handler saw the message id in its Context
        assert answer.correlation_id == "saga-1"
        assert answer.headers[h.CAUSATION_ID] == "m-1"
        assert answer.headers[h.VERSION] == 1
        assert answer.message_id not in (None, "m-1")

    async def test_a_message_without_id_or_type_is_routed_by_key_and_starts_a_saga(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Without `type` the routing key selects the contract; without `message_id`
        a stable id is derived and becomes the saga's correlation id."""
        path, _ = await echo_topology()
        with worker(broker, path):
            pika_publisher.publish("orders", "order.placed", order("o-2"), type=None, headers={})
            [answer] = await collect(broker.amqp_url, "answers", 1)
        assert answer.json()["order_id"] == "o-2"
        derived = answer.json()["sku"]
        assert derived.startswith("d-")
        assert answer.correlation_id == derived
        assert answer.headers[h.CAUSATION_ID] == derived


class TestScaling:
    async def test_two_processes_on_one_queue_split_the_load_and_handle_each_message_once(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Competing consumers: every message is answered exactly once, by either process."""
        path, _ = await echo_topology(prefetch=10, concurrency=4)
        total = 400
        with worker(broker, path) as first, worker(broker, path) as second:
            for i in range(total):
                pika_publisher.publish(
                    "orders", "order.placed", order(f"o-{i}"), message_id=f"m-{i}"
                )
            answers = await collect(broker.amqp_url, "answers", total, seconds=60)
        handled_by = Counter(a.json()["reason"] for a in answers)
        per_order = Counter(a.json()["order_id"] for a in answers)
        print(f"published={total} answered={len(answers)} split={dict(handled_by)}")
        assert len(answers) == total
        assert set(per_order.values()) == {1}
        assert set(handled_by) == {f"pid={first.pid}", f"pid={second.pid}"}


class TestShutdown:
    async def test_sigterm_during_in_flight_work_finishes_it_and_loses_nothing(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """On SIGTERM the worker finishes what it started, requeues the rest and exits 0;
        a second worker then answers everything that is left."""
        path, _ = await echo_topology(prefetch=20, concurrency=4)
        total = 40
        for i in range(total):
            pika_publisher.publish(
                "orders", "order.placed", order(f"o-{i}", customer_id="slow"), message_id=f"m-{i}"
            )
        first = worker(broker, path, env={"ECHO_SLOW_SECONDS": "0.5"}).start()
        early = await collect(broker.amqp_url, "answers", 4, seconds=20)
        code = first.stop(signal.SIGTERM)
        stopped = first.events("worker.stopped")
        assert code == 0
        assert stopped
        assert stopped[0]["drained"] is True
        with worker(broker, path, env={"ECHO_SLOW_SECONDS": "0"}):
            rest = await collect(broker.amqp_url, "answers", total - len(early), seconds=30)
        answered = Counter(a.json()["order_id"] for a in early + rest)
        assert sorted(answered) == sorted(f"o-{i}" for i in range(total))
        assert set(answered.values()) == {1}
        assert await queue_depth(broker.amqp_url, "echo") == 0


class TestPoisonMessages:
    async def test_malformed_unknown_and_misshapen_messages_are_parked_with_reasons(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Each bad message lands in echo.dead with its reason; the worker keeps going."""
        path, _ = await echo_topology()
        with worker(broker, path) as process:
            pika_publisher.publish("orders", "order.placed", b"{not json", message_id="bad-json")
            pika_publisher.publish(
                "orders", "order.placed", order("o-1"), type="NoSuchEvent", message_id="bad-type"
            )
            wrong = order("o-1")
            wrong["lines"][0]["qty"] = "two"
            pika_publisher.publish("orders", "order.placed", wrong, message_id="bad-schema")
            pika_publisher.publish("orders", "order.placed", order("o-9"), message_id="good")
            [answer] = await collect(broker.amqp_url, "answers", 1)
            parked = await collect(broker.amqp_url, "echo.dead", 3)
            assert process.events("message.dead_lettered")
        assert answer.json()["order_id"] == "o-9"
        by_id = {m.message_id: m for m in parked}
        assert set(by_id) == {"bad-json", "bad-type", "bad-schema"}
        assert by_id["bad-json"].headers[h.REASON] == "decode"
        assert "malformed JSON" in by_id["bad-json"].headers[h.ERROR_MESSAGE]
        assert by_id["bad-type"].headers[h.REASON] == "unknown-type"
        assert "NoSuchEvent" in by_id["bad-type"].headers[h.ERROR_MESSAGE]
        assert by_id["bad-schema"].headers[h.ERROR_MESSAGE] == (
            "OrderPlaced.lines[0].qty: expected int, got str"
        )
        for message in parked:
            assert message.headers[h.WORKER] == "echo"
            assert message.headers[h.ORIGINAL_EXCHANGE] == "orders"
            assert message.headers[h.ORIGINAL_ROUTING_KEY] == "order.placed"
        assert by_id["bad-json"].body == b"{not json"  # the body is kept as it was

    @pytest.mark.parametrize("queue_type", ["classic", "quorum"])
    async def test_a_failing_handler_is_retried_through_the_delay_queue_then_parked(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher, queue_type: str
    ) -> None:
        """Two in-process attempts, one 1 s delay tier, two more attempts, then echo.dead
        (a quorum delay tier dead-letters back at least once)."""
        path, _ = await echo_topology(queue_type=queue_type)
        with worker(broker, path) as process:
            pika_publisher.publish(
                "orders", "order.placed", order("o-1", customer_id="boom"), message_id="boom-1"
            )
            [parked] = await collect(broker.amqp_url, "echo.dead", 1, seconds=20)
            assert len(process.events("message.retried")) == 1
        assert parked.headers[h.REASON] == "retries-exhausted"
        assert parked.headers[h.ATTEMPTS] == 4
        assert parked.headers[h.RETRIES] == 1
        assert parked.headers[h.ERROR_TYPE] == "RuntimeError"
        assert "failed on purpose" in parked.headers[h.ERROR_MESSAGE]
        assert parked.headers[h.FIRST_FAILURE] <= parked.headers[h.LAST_FAILURE]


class TestCrashLoopWithoutDatabase:
    async def test_a_poison_message_on_a_classic_queue_is_parked_and_nothing_is_lost(
        self, broker: Broker, tmp_path, pika_publisher: PikaPublisher
    ) -> None:
        """Without an inbox database the count travels in a header: the poison is parked as
        a crash loop after the limit, and every other message is answered or parked."""
        from tests.integration.conftest import ECHO_TOPOLOGY
        from topology import load
        from topology.apply import apply

        path = tmp_path / "t.yaml"
        path.write_text(
            ECHO_TOPOLOGY.format(queue_type="classic", prefetch=10, concurrency=4)
            + "    crash_limit: 3\n"
        )
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        pika_publisher.publish(
            "orders", "order.placed", order("p", customer_id="poison"), message_id="poison-1"
        )
        for i in range(20):
            pika_publisher.publish("orders", "order.placed", order(f"o-{i}"), message_id=f"m-{i}")
        crashes = 0
        while crashes < 10:
            process = worker(broker, path).start()
            code = process.wait(10)
            if code is None:
                process.stop()
                break
            crashes += 1
        parked = await collect(broker.amqp_url, "echo.dead", 21, seconds=3)
        answers = await collect(broker.amqp_url, "answers", 21, seconds=3)
        by_id = {m.message_id: m for m in parked}
        print(f"crashes={crashes} answered={len(answers)} parked={len(parked)}")
        assert crashes == 3
        assert by_id["poison-1"].headers[h.REASON] == "crash-loop"
        assert all(m.headers[h.REASON] == "crash-loop" for m in parked)
        answered = {a.json()["order_id"] for a in answers}
        assert len(answered) + len(parked) == 21  # nothing lost

    async def test_a_crash_loop_on_a_quorum_queue_ends_at_the_brokers_delivery_limit(
        self, broker: Broker, tmp_path, pika_publisher: PikaPublisher
    ) -> None:
        """Without an inbox database RabbitMQ's x-delivery-limit bounds a quorum queue's
        crash loop (3.10 and 4.x alike, fleet sets it explicitly): past it the broker
        dead-letters the message to echo.dead, and `fleet dlq show` names the limit as
        its reason, not the delay tier it came back from before (its first death)."""
        from tests.integration.conftest import ECHO_TOPOLOGY
        from topology import load
        from topology.apply import apply
        from topology.management import Management
        from workers.dlq import show

        # Given a quorum queue that allows 2 unsettled deliveries, and a message that
        # fails once, goes through the 1 s delay tier, then kills every worker it meets
        path = tmp_path / "t.yaml"
        topology = ECHO_TOPOLOGY.format(queue_type="quorum", prefetch=10, concurrency=4)
        path.write_text(topology.replace("    retry:", "    delivery_limit: 2\n    retry:", 1))
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        pika_publisher.publish(
            "orders", "order.placed", order("p", customer_id="poison-late"), message_id="late-1"
        )
        for i in range(5):
            pika_publisher.publish("orders", "order.placed", order(f"o-{i}"), message_id=f"m-{i}")
        # When workers are started until one survives
        crashes = 0
        while crashes < 10:
            process = worker(broker, path).start()
            code = process.wait(10)
            if code is None:
                process.stop()
                break
            assert code == 13
            crashes += 1
        # Then the broker parked it after the limit's deliveries, and nothing was lost
        with Management.for_broker(broker.amqp_url, broker.management_url) as management:
            shown = show(management, "echo.dead", 10)
        answers = await collect(broker.amqp_url, "answers", 5, seconds=5)
        assert crashes == 3
        assert shown is not None
        assert [(m.message_id, m.reason) for m in shown] == [
            ("late-1", "delivery_limit (by the broker)")
        ]
        assert shown[0].attempts == 2  # the in-process attempts before the delay tier
        assert sorted(a.json()["order_id"] for a in answers) == [f"o-{i}" for i in range(5)]


class TestStartup:
    async def test_a_worker_refuses_to_start_when_the_topology_was_not_applied(
        self, broker: Broker, tmp_path
    ) -> None:
        """Without its queues the worker exits 1 with one line saying to run apply."""
        from tests.integration.conftest import ECHO_TOPOLOGY

        path = tmp_path / "t.yaml"
        path.write_text(ECHO_TOPOLOGY.format(queue_type="classic", prefetch=8, concurrency=2))
        process = worker(broker, path)
        with pytest.raises(RuntimeError, match="fleet topology apply"):
            process.start(timeout=20)
        assert process.stop() == 1

    async def test_a_worker_refuses_a_topology_applied_before_failure_exchanges(
        self, broker: Broker, echo_topology
    ) -> None:
        """Without `<queue>.failures` (an older fleet applied the file) it exits 1 with
        the one line saying to run apply."""
        # Given
        path, _ = await echo_topology()
        with broker.api() as api:
            api.delete(
                f"/api/exchanges/{quote(broker.vhost, safe='')}/echo.failures"
            ).raise_for_status()
        process = worker(broker, path)
        # When
        with pytest.raises(RuntimeError, match="fleet topology apply"):
            process.start(timeout=20)
        # Then
        assert process.stop() == 1
        assert (
            "error: exchange 'echo.failures' does not exist on this broker: "
            "run `fleet topology apply` first"
        ) in process.output


class TestBrokerRestart:
    async def test_the_worker_reconnects_after_a_broker_restart_and_resumes(
        self,
        broker: Broker,
        broker_ctl: list[str],
        echo_topology,
        pika_publisher: PikaPublisher,
    ) -> None:
        """After `rabbitmqctl stop_app` / `start_app` the same process consumes again."""
        path, _ = await echo_topology(queue_type="quorum")
        with worker(broker, path) as process:
            pika_publisher.publish("orders", "order.placed", order("before"), message_id="m-before")
            assert len(await collect(broker.amqp_url, "answers", 1)) == 1
            pika_publisher.close()
            await rabbitmqctl("stop_app", "start_app", "await_startup", ctl=broker_ctl)
            after = PikaPublisher(broker.amqp_url)
            after.publish("orders", "order.placed", order("after"), message_id="m-after")
            after.close()
            [answer] = await collect(broker.amqp_url, "answers", 1, seconds=60)
            assert len(process.events("worker.consuming")) >= 2
        assert answer.json()["order_id"] == "after"
