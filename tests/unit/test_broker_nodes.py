"""Several broker nodes: parsing URL lists, where they come from, and the order nodes are tried."""

from __future__ import annotations

import socket

import click
import pytest

from topology import loads
from topology.nodes import first_reachable, split_urls
from workers.cli.options import DEFAULT_AMQP_URL, resolve_url
from workers.runtime.nodes import NodeRing

A = "amqp://guest:guest@rabbit-1:5672/shop"
B = "amqp://guest:guest@rabbit-2:5672/shop"
C = "amqp://guest:guest@rabbit-3:5672/shop"


class TestSplitUrls:
    def test_a_comma_separated_list_names_each_node(self) -> None:
        """Spaces around entries and empty entries are ignored."""
        assert split_urls(f" {A} ,{B},, {C}") == [A, B, C]

    def test_one_url_is_a_list_of_one(self) -> None:
        """The single-node form keeps working unchanged."""
        assert split_urls(A) == [A]

    def test_an_entry_that_is_not_an_amqp_url_is_refused(self) -> None:
        """A host name alone would otherwise fail later with a vaguer error."""
        with pytest.raises(ValueError, match="not an AMQP URL: 'rabbit-2:5672'"):
            split_urls(f"{A},rabbit-2:5672")

    def test_nothing_at_all_is_refused(self) -> None:
        """An empty FLEET_AMQP_URL is a mistake, not the default."""
        with pytest.raises(ValueError, match="no broker URL"):
            split_urls(" , ")


class TestResolveUrl:
    def test_the_flag_or_environment_wins_over_the_file(self) -> None:
        """click puts --url or FLEET_AMQP_URL into `url`; the file's list is then unused."""
        topology = loads(f"broker: {{urls: ['{A}', '{B}']}}\n")
        assert resolve_url(C, topology) == C

    def test_the_file_names_the_nodes_when_nothing_else_does(self) -> None:
        """The file's list becomes the comma-separated form the CLI passes on."""
        topology = loads(f"broker: {{urls: ['{A}', '{B}']}}\n")
        assert resolve_url(None, topology) == f"{A},{B}"

    def test_without_any_the_local_broker_is_used(self) -> None:
        """No flag, no environment, no file list: the documented default."""
        assert resolve_url(None, loads("exchanges: {orders: {}}\n")) == DEFAULT_AMQP_URL
        assert resolve_url(None) == DEFAULT_AMQP_URL

    def test_a_malformed_list_is_a_usage_error(self) -> None:
        """The mistake is reported against --url, as one line."""
        with pytest.raises(click.BadParameter, match="not an AMQP URL"):
            resolve_url(f"{A},localhost")

    def test_a_bad_url_in_the_file_names_its_path(self) -> None:
        """The file's list is checked when it is loaded."""
        from topology import TopologyInvalid

        with pytest.raises(TopologyInvalid, match=r"broker\.urls\[1\]: not an AMQP URL"):
            loads(f"broker: {{urls: ['{A}', 'http://rabbit-2']}}\n")


class TestNodeRing:
    def test_nodes_are_tried_in_the_order_given(self) -> None:
        """Before any connection, the first node comes first."""
        assert NodeRing(f"{A},{B},{C}").candidates() == [A, B, C]

    def test_a_process_keeps_to_its_node_while_it_answers(self) -> None:
        """A channel that closes alone does not move the process to another node."""
        ring = NodeRing(f"{A},{B},{C}")
        ring.connected(B)
        assert ring.candidates() == [B, C, A]
        assert ring.current == B

    def test_after_a_loss_the_next_node_is_tried_first(self) -> None:
        """The node that just dropped the connection comes last."""
        ring = NodeRing(f"{A},{B},{C}")
        ring.connected(C)
        ring.lost()
        assert ring.candidates() == [A, B, C]
        assert ring.current is None

    def test_a_loss_without_a_connection_changes_nothing(self) -> None:
        """Failed attempts already moved through the list; no node is skipped."""
        ring = NodeRing(f"{A},{B}")
        ring.lost()
        assert ring.candidates() == [A, B]


class TestFirstReachable:
    def test_the_first_node_that_accepts_a_connection_is_chosen(self) -> None:
        """A node whose port is closed is passed over."""
        with socket.socket() as listening, socket.socket() as closed:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            closed.bind(("127.0.0.1", 0))  # bound, not listening: refuses connections
            up = f"amqp://guest:guest@127.0.0.1:{listening.getsockname()[1]}/"
            down = f"amqp://guest:guest@127.0.0.1:{closed.getsockname()[1]}/"
            assert first_reachable(f"{down},{up}") == up

    def test_with_no_node_up_the_first_is_returned_for_the_caller_to_report(self) -> None:
        """The caller's own connection then says why it cannot connect."""
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            down = f"amqp://guest:guest@127.0.0.1:{closed.getsockname()[1]}/"
            assert first_reachable(f"{down},{down}") == down
