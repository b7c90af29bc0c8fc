"""The pytest plugin's decisions that need no broker: which topology file, which
exchange an event goes to, and what a tap binds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from contracts import Event
from topology import loads
from workers.pytest_plugin import exchange_for, tap_bindings, topology_path

TOPOLOGY = loads(
    """
exchanges:
  bakery: {}
  baked: {type: direct}
  everything: {type: fanout}
  filtered: {type: headers}
  audit: {}
queues:
  ovens:
    bind: [{exchange: bakery, routing_key: bread.ordered}]
  deliveries:
    bind: [{exchange: baked, routing_key: bread.baked}, {exchange: baked, routing_key: cake.baked}]
  archive:
    bind: [{exchange: audit, routing_key: "cake.#"}, {exchange: audit, routing_key: "bread.#"}]
workers:
  ovens: {module: bakery.ovens, queue: ovens}
  archivist: {module: bakery.archive, queue: archive}
"""
)


class BreadOrdered(Event, frozen=True, kw_only=True):
    __routing_key__ = "bread.ordered"


class CakeBaked(Event, frozen=True, kw_only=True):
    __routing_key__ = "cake.baked"


class FlourSpilled(Event, frozen=True, kw_only=True):
    __routing_key__ = "flour.spilled"


def config(tmp_path: Path, ini: str = "", inipath: Path | None = None) -> pytest.Config:
    """What `topology_path` reads of a pytest Config."""
    stub: Any = SimpleNamespace(
        getini=lambda name: ini, inipath=inipath, rootpath=tmp_path / "root"
    )
    return cast(pytest.Config, stub)


class TestTopologyFile:
    def test_the_ini_option_wins_and_is_relative_to_the_ini_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``fleet_topology`` in the ini names the file, even with FLEET_TOPOLOGY set."""
        # Given
        monkeypatch.setenv("FLEET_TOPOLOGY", "/elsewhere/fleet.yaml")
        ini = tmp_path / "project" / "pyproject.toml"
        # When
        path = topology_path(config(tmp_path, "deploy/test.yaml", ini))
        # Then
        assert path == tmp_path / "project" / "deploy" / "test.yaml"

    def test_fleet_topology_comes_next_relative_to_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the ini option, the variable the CLI reads is used, as the CLI would."""
        # Given
        monkeypatch.setenv("FLEET_TOPOLOGY", "deploy/fleet.yaml")
        monkeypatch.chdir(tmp_path)
        # When / Then
        assert topology_path(config(tmp_path)) == tmp_path / "deploy" / "fleet.yaml"

    def test_otherwise_it_is_fleet_yaml_in_the_rootdir(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A project made like the README's has its file at the top."""
        monkeypatch.delenv("FLEET_TOPOLOGY", raising=False)
        assert topology_path(config(tmp_path)) == tmp_path / "root" / "fleet.yaml"


class TestExchangeFor:
    def test_the_exchange_leading_to_a_worker_that_handles_it_is_chosen(self) -> None:
        """An event goes where its handler's queue is bound, not to a catch-all elsewhere."""

        # Given: `audit` routes bread.# too, but only the ovens handle BreadOrdered
        def handles(worker: str) -> bool:
            return worker == "ovens"

        # When / Then
        assert exchange_for(TOPOLOGY, BreadOrdered, handles) == "bakery"

    def test_without_a_handler_any_exchange_routing_it_will_do_if_it_is_the_only_one(
        self,
    ) -> None:
        """An event nobody handles (a follow-on to test downstream) goes where it routes."""
        # Given
        topology = loads(
            "exchanges: {a: {}}\nqueues: {q: {bind: [{exchange: a, routing_key: x.#}]}}"
        )

        class Noted(Event, frozen=True, kw_only=True):
            __routing_key__ = "x.noted"

        # When / Then
        assert exchange_for(topology, Noted) == "a"

    def test_several_candidates_are_named_and_refused(self) -> None:
        """Ambiguity is the test author's to settle with exchange=."""
        with pytest.raises(LookupError, match=r"routes through 'audit', 'baked' in"):
            exchange_for(TOPOLOGY, CakeBaked)

    def test_an_event_routed_nowhere_is_refused(self) -> None:
        """An event no binding takes is named with its routing key."""
        with pytest.raises(LookupError, match=r"FlourSpilled \(flour\.spilled\) is routed nowhere"):
            exchange_for(TOPOLOGY, FlourSpilled)


class TestTapBindings:
    @pytest.mark.parametrize(
        ("exchange", "keys"),
        [
            ("bakery", ("#",)),
            ("everything", ("",)),
            ("filtered", ("",)),
            ("baked", ("bread.baked", "cake.baked")),
            ("unknown", ("#",)),
        ],
    )
    def test_a_tap_binds_what_sees_every_message_of_its_exchange(
        self, exchange: str, keys: tuple[str, ...]
    ) -> None:
        """Topic: ``#``; fanout and headers: any key; direct: each key the topology binds."""
        assert tap_bindings(TOPOLOGY, exchange) == keys

    def test_a_direct_exchange_without_bindings_needs_its_keys_named(self) -> None:
        """Nothing to infer from: the error says to name the keys."""
        # Given
        topology = loads("exchanges: {d: {type: direct}}\nqueues: {}")
        # When / Then
        with pytest.raises(LookupError, match="name the keys"):
            tap_bindings(topology, "d")
