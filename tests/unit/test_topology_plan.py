"""The planner: desired vs live vs last applied → changes, without a broker."""

from __future__ import annotations

from typing import Any

from topology import expand, loads
from topology.names import RECORD_QUEUE
from topology.plan import NO_CHANGES, Change, Plan, plan
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources


def orders_exchange(**overrides: Any) -> ExchangeDecl:
    """The 'orders' topic exchange, with some fields replaced."""
    return ExchangeDecl(**{"name": "orders", "type": "topic", **overrides})


def payments_queue(**overrides: Any) -> QueueDecl:
    """A quorum 'payments' queue with a delivery limit of 10, with some fields replaced."""
    fields: dict[str, Any] = {
        "name": "payments",
        "type": "quorum",
        "arguments": {"x-delivery-limit": 10},
    }
    return QueueDecl(**{**fields, **overrides})


def placed_binding(**overrides: Any) -> BindingDecl:
    """orders → payments on 'order.placed', with some fields replaced."""
    fields: dict[str, Any] = {
        "source": "orders",
        "destination": "payments",
        "routing_key": "order.placed",
    }
    return BindingDecl(**{**fields, **overrides})


def resources(*items: ExchangeDecl | QueueDecl | BindingDecl) -> Resources:
    """Resources holding exactly these objects."""
    return Resources(
        exchanges=[i for i in items if isinstance(i, ExchangeDecl)],
        queues=[i for i in items if isinstance(i, QueueDecl)],
        bindings=[i for i in items if isinstance(i, BindingDecl)],
    )


def kinds(result: Plan) -> list[tuple[str, str]]:
    """(kind, resource key) of every change, in order."""
    return [(c.kind, c.resource.key) for c in result.changes]


class TestPlan:
    """plan(desired, live, record) sorts every difference into one kind of change."""

    def test_an_empty_broker_and_no_record_means_everything_is_created(self) -> None:
        """What fleet never applied and the broker lacks is created, in declaration order."""
        # Given
        desired = resources(orders_exchange(), payments_queue(), placed_binding())
        # When
        result = plan(desired, Resources(), None)
        # Then
        assert kinds(result) == [
            ("create", "exchange orders"),
            ("create", "queue payments"),
            ("create", "binding orders → payments [order.placed]"),
        ]
        assert all(c.in_place for c in result.changes)
        assert len(result.pending) == 3

    def test_a_broker_that_matches_gives_an_empty_plan(self) -> None:
        """Nothing to do prints the one sentence that says so."""
        # Given
        desired = resources(orders_exchange(), payments_queue(), placed_binding())
        # When
        result = plan(desired, desired, desired)
        # Then
        assert result.changes == []
        assert not result.pending
        assert result.render() == NO_CHANGES

    def test_a_changed_argument_is_a_change_that_needs_a_recreate(self) -> None:
        """The file raising a delivery limit cannot be applied in place."""
        # Given: applied with a limit of 10, and the file now says 20
        applied = resources(payments_queue())
        desired = resources(payments_queue(arguments={"x-delivery-limit": 20}))
        # When
        result = plan(desired, applied, applied)
        # Then
        assert result.changes == [
            Change(
                kind="change",
                resource=desired.queues[0],
                differences=["x-delivery-limit: 10 → 20"],
                in_place=False,
            )
        ]
        assert result.unsafe == result.changes

    def test_a_changed_type_without_a_record_is_a_change(self) -> None:
        """A queue fleet never applied, of another type on the broker, is a change."""
        # Given
        live = resources(payments_queue(type="classic", arguments={}))
        desired = resources(payments_queue(arguments={}))
        # When
        [change] = plan(desired, live, None).changes
        # Then
        assert (change.kind, change.differences, change.in_place) == (
            "change",
            ["type: classic → quorum"],
            False,
        )
        assert change.headline == "~ queue payments (quorum): needs --recreate"

    def test_a_queue_deleted_by_hand_since_the_last_apply_is_drift(self) -> None:
        """Declared and applied before, now missing: someone deleted it."""
        # Given
        desired = resources(payments_queue())
        # When
        [change] = plan(desired, Resources(), desired).changes
        # Then
        assert change.kind == "drift"
        assert change.in_place
        assert change.render().startswith("! queue payments (quorum)\n    absent on the broker")

    def test_an_argument_changed_by_hand_is_drift_that_needs_a_recreate(self) -> None:
        """The file still says what was applied, but the broker holds something else."""
        # Given
        desired = resources(payments_queue())
        live = resources(payments_queue(arguments={"x-delivery-limit": 5}))
        # When
        [change] = plan(desired, live, desired).changes
        # Then
        assert (change.kind, change.differences, change.in_place) == (
            "drift",
            ["x-delivery-limit: 5 → 10"],
            False,
        )

    def test_a_binding_deleted_by_hand_is_drift(self) -> None:
        """A binding fleet made and someone removed comes back as drift."""
        # Given
        desired = resources(orders_exchange(), payments_queue(), placed_binding())
        live = resources(orders_exchange(), payments_queue())
        # When
        result = plan(desired, live, desired)
        # Then
        assert kinds(result) == [("drift", "binding orders → payments [order.placed]")]

    def test_objects_nobody_declared_are_unmanaged_and_not_pending(self) -> None:
        """fleet shows what it does not manage, and apply leaves it alone."""
        # Given
        desired = resources(orders_exchange())
        live = resources(
            orders_exchange(),
            ExchangeDecl(name="legacy", type="fanout"),
            QueueDecl(name="scratch", type="classic"),
            BindingDecl(source="legacy", destination="scratch", routing_key=""),
        )
        # When
        result = plan(desired, live, desired)
        # Then
        assert kinds(result) == [
            ("unmanaged", "exchange legacy"),
            ("unmanaged", "queue scratch"),
            ("unmanaged", "binding legacy → scratch []"),
        ]
        assert not result.pending
        assert result.render().endswith(NO_CHANGES + " 3 unmanaged objects left alone.")

    def test_the_record_queue_and_amq_objects_are_never_shown(self) -> None:
        """fleet's own record and RabbitMQ's amq.* objects are not the user's business."""
        # Given
        live = resources(
            QueueDecl(name=RECORD_QUEUE, type="classic", arguments={"x-max-length": 1}),
            QueueDecl(name="amq.gen-abc", type="classic"),
            ExchangeDecl(name="amq.topic", type="topic"),
            BindingDecl(source="amq.topic", destination="amq.gen-abc", routing_key="#"),
        )
        # When
        result = plan(Resources(), live, None)
        # Then
        assert result.changes == []

    def test_a_queue_dropped_from_the_file_is_unmanaged_with_a_note(self) -> None:
        """apply never deletes a queue, so a queue the file dropped is shown, not removed."""
        # Given
        applied = resources(payments_queue())
        # When
        [change] = plan(Resources(), applied, applied).changes
        # Then
        assert change.kind == "unmanaged"
        assert change.differences == [
            "no longer in the topology file; apply never deletes a queue: delete it by hand"
        ]

    def test_a_binding_dropped_from_the_file_is_removed(self) -> None:
        """A binding fleet made and the file no longer declares is unbound by apply."""
        # Given
        before = resources(orders_exchange(), payments_queue(), placed_binding())
        desired = resources(orders_exchange(), payments_queue())
        # When
        result = plan(desired, before, before)
        # Then
        assert kinds(result) == [("remove", "binding orders → payments [order.placed]")]
        assert result.pending == result.changes
        assert result.render().splitlines() == [
            "- binding orders → payments [order.placed]",
            "Plan: 1 to remove.",
        ]

    def test_a_binding_already_gone_from_the_broker_is_not_removed_again(self) -> None:
        """Removing what is not there is no change."""
        # Given
        before = resources(placed_binding())
        # When
        result = plan(Resources(), Resources(), before)
        # Then
        assert result.changes == []

    def test_numerically_equal_arguments_are_equal(self) -> None:
        """The management API returns 30000 where the file may say 30000.0."""
        # Given
        desired = resources(
            payments_queue(arguments={"x-message-ttl": 30000.0}),
            placed_binding(arguments={"x-match": "all", "weight": 2.0}),
        )
        live = resources(
            payments_queue(arguments={"x-message-ttl": 30000}),
            placed_binding(arguments={"weight": 2, "x-match": "all"}),
        )
        # When
        result = plan(desired, live, None)
        # Then
        assert result.changes == []

    def test_a_boolean_is_not_equal_to_a_number(self) -> None:
        """true and 1 mean different things to RabbitMQ, though Python calls them equal."""
        # Given
        desired = resources(payments_queue(arguments={"x-single-active-consumer": True}))
        live = resources(payments_queue(arguments={"x-single-active-consumer": 1}))
        # When
        [change] = plan(desired, live, None).changes
        # Then
        assert change.differences == ["x-single-active-consumer: 1 → true"]

    def test_an_argument_only_one_side_has_is_shown_as_unset(self) -> None:
        """Arguments added or dropped name the missing side."""
        # Given
        desired = resources(payments_queue(arguments={"x-max-length": 100}))
        live = resources(payments_queue(arguments={"x-delivery-limit": 10}))
        # When
        [change] = plan(desired, live, None).changes
        # Then
        assert change.differences == [
            "x-delivery-limit: 10 → (unset)",
            "x-max-length: (unset) → 100",
        ]

    def test_the_summary_counts_each_kind(self) -> None:
        """The last line says how much apply would do, and how much needs a recreate."""
        # Given
        before = resources(payments_queue(), placed_binding())
        desired = resources(orders_exchange(), payments_queue(arguments={}))
        # When
        result = plan(desired, before, before)
        # Then
        assert result.summary() == "Plan: 1 to create, 1 to change, 1 to remove. 1 need --recreate."

    def test_an_expanded_topology_compared_with_itself_plans_nothing(self) -> None:
        """expand() output compared with itself is the no-op a second apply must see."""
        # Given
        desired = expand(
            loads(
                "exchanges: {orders: {}}\n"
                "queues:\n"
                "  inventory: {bind: [{exchange: orders, routing_key: order.placed}]}\n"
            )
        )
        # When
        result = plan(desired, desired, desired)
        # Then
        assert result.changes == []
