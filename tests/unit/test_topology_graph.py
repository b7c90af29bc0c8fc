"""The Mermaid graph of a topology, drawn from the file and the wiring as data."""

from __future__ import annotations

from topology import EventRoute, WorkerWiring, loads
from topology.graph import mermaid

SAGA = """
exchanges:
  orders: {type: topic}
  inventory: {type: topic}
queues:
  inventory:
    bind: [{exchange: orders, routing_key: order.placed}]
  order-events:
    type: stream
    bind: [{exchange: orders, routing_key: "order.#"}]
  order_events:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
workers:
  inventory:
    module: fulfilment.inventory
    queue: inventory
    publish_to: inventory
"""

RESERVE = WorkerWiring(
    handles=[EventRoute("OrderPlaced", "order.placed")],
    emits=[
        EventRoute("StockReserved", "stock.reserved"),
        EventRoute("StockRejected", "stock.rejected"),
    ],
)


class TestMermaid:
    """mermaid(topology, wiring): exchanges → queues → workers → events → exchanges."""

    def test_the_graph_is_a_left_to_right_flowchart(self) -> None:
        """The first line tells Mermaid what to draw."""
        # Given / When
        text = mermaid(loads(SAGA), {"inventory": RESERVE})
        # Then
        assert text.splitlines()[0] == "flowchart LR"

    def test_every_object_is_a_node_with_its_type(self) -> None:
        """Exchanges are hexagons, queues cylinders, workers subroutines, each labelled."""
        # Given / When
        lines = mermaid(loads(SAGA), {"inventory": RESERVE}).splitlines()
        # Then
        assert '    ex_orders{{"orders (topic)"}}' in lines
        assert '    q_inventory[("inventory (quorum)")]' in lines
        assert '    q_order_events[("order-events (stream)")]' in lines
        assert '    w_inventory[["inventory worker"]]' in lines

    def test_names_that_sanitise_alike_get_distinct_ids(self) -> None:
        """'order-events' and 'order_events' are two queues, so two nodes."""
        # Given / When
        lines = mermaid(loads(SAGA)).splitlines()
        # Then
        assert '    q_order_events_2[("order_events (classic)")]' in lines
        assert '    ex_orders -->|"order.placed"| q_order_events_2' in lines

    def test_bindings_are_edges_labelled_with_their_routing_key(self) -> None:
        """A '#' in a routing key is written as an entity code, which Mermaid renders as '#'."""
        # Given / When
        lines = mermaid(loads(SAGA), {"inventory": RESERVE}).splitlines()
        # Then
        assert '    ex_orders -->|"order.placed"| q_inventory' in lines
        assert '    ex_orders -->|"order.#35;"| q_order_events' in lines

    def test_a_worker_leads_to_the_events_it_emits_and_their_exchange(self) -> None:
        """queue → worker → event → the exchange the worker publishes to."""
        # Given / When
        lines = mermaid(loads(SAGA), {"inventory": RESERVE}).splitlines()
        # Then
        assert "    q_inventory --> w_inventory" in lines
        assert '    ev_inventory_StockReserved>"StockReserved"]' in lines
        assert "    w_inventory --> ev_inventory_StockReserved" in lines
        assert '    ev_inventory_StockReserved -->|"stock.reserved"| ex_inventory' in lines
        assert '    ev_inventory_StockRejected -->|"stock.rejected"| ex_inventory' in lines

    def test_a_worker_without_wiring_points_dashed_at_its_exchange(self) -> None:
        """When the worker's code is not known, the graph still shows where it publishes."""
        # Given / When
        lines = mermaid(loads(SAGA), {}).splitlines()
        # Then
        assert "    w_inventory -.-> ex_inventory" in lines
        assert not any(line.strip().startswith("ev_") for line in lines)

    def test_quotes_in_names_cannot_break_the_label(self) -> None:
        """A double quote in a routing key becomes #quot;."""
        # Given
        topology = loads(
            "exchanges: {h: {type: headers}}\n"
            "queues: {q: {bind: [{exchange: h, routing_key: 'say \"hi\"'}]}}\n"
        )
        # When
        lines = mermaid(topology).splitlines()
        # Then
        assert '    ex_h -->|"say #quot;hi#quot;"| q_q' in lines
