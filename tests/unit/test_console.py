"""The console's pure parts: access rules, filters and groups, diagrams, dry runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fulfilment import TOPOLOGY_FILE

from topology import load
from topology.graph import mermaid
from workers.console.actions import InvalidEdit, plan_replay, validate
from workers.console.diagrams import CLIENT, arrows, parse_mermaid, saga_svg, topology_svg
from workers.console.failures import FailedMessage, Filters, grouped, message_key
from workers.console.security import (
    OPERATOR,
    READ_ONLY,
    Access,
    ConsoleRefused,
    check_bind,
    host_is_loopback,
    is_loopback,
)
from workers.dlq import ParkedMessage
from workers.runtime import headers as h
from workers.saga import Step

TOKEN, READONLY = "o" * 20, "r" * 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class TestAccess:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.1.2.3"])
    def test_loopback_addresses_are_loopback(self, host: str) -> None:
        assert is_loopback(host)

    @pytest.mark.parametrize("host", ["0.0.0.0", "", "10.0.0.5", "console.example", "::"])
    def test_other_addresses_are_not(self, host: str) -> None:
        assert not is_loopback(host)

    @pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "console.example"])
    def test_a_non_loopback_bind_without_a_token_is_refused(self, host: str) -> None:
        with pytest.raises(ConsoleRefused, match="without a token"):
            check_bind(host, Access())

    def test_a_non_loopback_bind_with_a_token_is_allowed(self) -> None:
        check_bind("0.0.0.0", Access(TOKEN))
        check_bind("0.0.0.0", Access(None, READONLY))

    def test_short_or_equal_tokens_are_refused(self) -> None:
        with pytest.raises(ConsoleRefused, match="shorter than 16"):
            check_bind("127.0.0.1", Access("short"))
        with pytest.raises(ConsoleRefused, match="the same"):
            check_bind("127.0.0.1", Access(TOKEN, TOKEN))

    def test_each_token_gives_its_role_and_others_none(self) -> None:
        access = Access(TOKEN, READONLY)
        assert access.role_of(TOKEN) == OPERATOR
        assert access.role_of(READONLY) == READ_ONLY
        assert access.role_of("x" * 20) is None
        assert Access().role_of("") is None

    @pytest.mark.parametrize(
        ("header", "expected"),
        [("127.0.0.1:8090", True), ("localhost", True), ("[::1]:8090", True),
         ("evil.example:8090", False), ("127.0.0.1.evil.example", False)],
    )  # fmt: skip
    def test_host_headers_naming_the_loopback(self, header: str, expected: bool) -> None:
        assert host_is_loopback(header) is expected


def failed(i: int, reason: str = "permanent", error_type: str = "CardExpired",
           at: datetime = T0, body: bytes = b'{"order_id": "o-1"}') -> FailedMessage:  # fmt: skip
    headers = {h.REASON: reason, h.ERROR_TYPE: error_type}
    parked = ParkedMessage(
        message_id=f"m-{i}", type="OrderPlaced", reason=reason, error_type=error_type,
        error=f"{error_type}!", attempts=3, worker="inventory", original_exchange="orders",
        original_routing_key="order.placed", first_failure=None, last_failure=None, body=body,
    )  # fmt: skip
    return FailedMessage("inventory.dead", i, message_key(f"m-{i}", body, headers), parked,
                         {"message_id": f"m-{i}"}, headers, at)  # fmt: skip


class TestFailures:
    def test_messages_group_by_queue_reason_and_exception_biggest_first(self) -> None:
        messages = [failed(0), failed(1, "decode", "InvalidPayload"), failed(2), failed(3)]
        groups = grouped(messages, Filters())
        assert [(g.reason, g.error_type, len(g.messages)) for g in groups] == [
            ("permanent", "CardExpired", 3),
            ("decode", "InvalidPayload", 1),
        ]
        assert groups[0].id != groups[1].id

    def test_filters_narrow_by_reason_type_text_and_time(self) -> None:
        messages = [
            failed(0, at=T0),
            failed(1, "decode", "InvalidPayload", at=T0 + timedelta(hours=2)),
            failed(2, body=b'{"order_id": "o-needle"}', at=T0 + timedelta(hours=3)),
        ]

        def ids(filters: Filters) -> list[str | None]:
            return [m.parked.message_id for g in grouped(messages, filters) for m in g.messages]

        assert ids(Filters(reason="decode")) == ["m-1"]
        assert ids(Filters(error_type="CardExpired")) == ["m-0", "m-2"]
        assert ids(Filters(text="NEEDLE")) == ["m-2"]
        assert ids(Filters(text="invalidpayload")) == ["m-1"]  # a header value
        assert ids(Filters(since=T0 + timedelta(hours=1))) == ["m-1", "m-2"]
        assert ids(Filters(until=T0 + timedelta(hours=1))) == ["m-0"]

    def test_the_key_tells_apart_two_parkings_of_one_message(self) -> None:
        first = message_key("m-1", b"{}", {h.LAST_FAILURE: "2026-01-01T00:00:00"})
        again = message_key("m-1", b"{}", {h.LAST_FAILURE: "2026-01-02T00:00:00"})
        assert first != again
        assert first == message_key("m-1", b"{}", {h.LAST_FAILURE: "2026-01-01T00:00:00"})


class TestReplayPlans:
    def test_the_dry_run_says_where_messages_go_and_which_headers_go(self) -> None:
        plan = plan_replay("inventory.dead", [("m-1", {h.REASON: "permanent", "version": 1})])
        assert plan.origin == "inventory"
        assert plan.removed_headers == [h.REASON]
        assert (
            "1 message(s) from inventory.dead would be published to queue 'inventory'"
            in (plan.lines()[0])
        )

    def test_an_edit_is_checked_against_the_contract(self) -> None:
        import fulfilment.contracts  # noqa: F401  (registers OrderPlaced)

        good = (b'{"order_id": "o-1", "customer_id": "c-1", "total_cents": 120, "lines": '
                b'[{"sku": "apple", "qty": 1, "unit_price_cents": 120}]}')  # fmt: skip
        validate("OrderPlaced", {"version": 2}, good)
        with pytest.raises(InvalidEdit, match="customer_id"):
            validate("OrderPlaced", {"version": 2}, b'{"order_id": "o-1"}')
        with pytest.raises(InvalidEdit, match="no `type`"):
            validate(None, {}, good)
        with pytest.raises(InvalidEdit):
            validate("NoSuchEvent", {}, good)


def step(message_id: str, causation: str | None, type_: str, worker: str, outcome: str,
         ms: int, emitted: list[str] | None = None) -> Step:  # fmt: skip
    return Step(message_id, causation, type_, worker, outcome, emitted or [], None,
                T0 + timedelta(milliseconds=ms))  # fmt: skip


class TestDiagrams:
    def test_the_topology_graph_is_parsed_back_whole(self) -> None:
        topology = load(TOPOLOGY_FILE)
        nodes, edges = parse_mermaid(mermaid(topology))
        assert {n.label for n in nodes.values() if n.kind == "w"} == {
            f"{name} worker" for name in topology.workers
        }
        assert sum(1 for n in nodes.values() if n.kind == "q") == len(topology.queues)
        bindings = sum(len(q.bind) for q in topology.queues.values())
        assert sum(1 for e in edges if nodes[e.a].kind == "ex" and nodes[e.b].kind == "q") == (
            bindings
        )
        assert topology_svg(mermaid(topology)).count('class="node w"') == len(topology.workers)

    def test_saga_arrows_run_from_the_emitting_worker_and_mark_retries(self) -> None:
        steps = [
            step("placed", None, "OrderPlaced", "inventory", "processed", 0, ["StockReserved"]),
            step("reserved", "placed", "StockReserved", "payments", "retried", 10),
            step("reserved", "placed", "StockReserved", "payments", "processed", 210),
        ]
        drawn = arrows(steps)
        assert [(a.source, a.target, a.step.outcome, a.ms) for a in drawn] == [
            (CLIENT, "inventory", "processed", 0),
            ("inventory", "payments", "retried", 10),
            ("inventory", "payments", "processed", 210),
        ]
        svg = saga_svg(steps)
        assert svg.count('data-outcome="retried"') == 1
        assert "↻ StockReserved" in svg
