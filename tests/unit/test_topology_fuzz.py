"""Property-based fuzzing of the topology loader: whatever the file holds, `loads`
returns a Topology or raises TopologyInvalid naming the problems, never another
error; and a file it accepts can be checked, expanded, planned and drawn."""

from __future__ import annotations

import copy
from typing import Any

import fulfilment.contracts  # noqa: F401  (the reference file's webhooks name them)
import yaml
from fulfilment import TOPOLOGY_FILE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topology import (
    Topology,
    TopologyInvalid,
    check_references,
    expand,
    loads,
    mermaid,
    plan,
)
from topology.durability import durability_problems
from topology.resources import Resources

REFERENCE = yaml.safe_load(TOPOLOGY_FILE.read_text())

# The file's own words, so random documents reach past the first type check.
WORDS = [
    "version", "exchanges", "queues", "workers", "ingress", "routes", "metrics", "webhooks",
    "broker", "type", "durable", "arguments", "bind", "exchange", "routing_key", "retry",
    "attempts", "backoff", "max_backoff", "delays", "delivery_limit", "delay", "ttl", "then",
    "module", "queue", "publish_to", "faults", "prefetch", "concurrency", "replicas",
    "permanent_errors", "transient_errors", "terminal", "crash_limit", "inbox_retention",
    "commit_batch", "rate", "burst", "handler_rates", "contract", "auth", "secrets_env",
    "max_body", "allow_ips", "reply", "breaker", "failures", "cool_down", "error_rate", "window",
    "min_calls",
    "events", "timeout", "urls", "quorum_replicas", "url", "port", "lag_interval",
    "orders", "topic", "quorum", "classic", "stream", "auto", "5s", "30s", "-1s", "1h", "50/s",
    "0/s", "OrderPlaced",
    "order.placed", "#", "*",
]  # fmt: skip

scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.none(),
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a parsed YAML tree."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += paths(value, (*prefix, index))
    return found


REFERENCE_PATHS = paths(REFERENCE)[1:]


@st.composite
def mutated_reference(draw: st.DrawFn) -> str:
    """The reference fleet's file with a few of its nodes replaced by random values."""
    tree = copy.deepcopy(REFERENCE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(REFERENCE_PATHS))
        node = tree
        try:
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = draw(documents)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return yaml.safe_dump(tree, sort_keys=False)


def loaded(text: str) -> Topology | TopologyInvalid:
    """The topology, or the refusal (any other exception escapes: the defect)."""
    try:
        return loads(text, "fuzz.yaml")
    except TopologyInvalid as error:
        return error


def expanded(topology: Topology) -> Resources | TopologyInvalid:
    try:
        return expand(topology)
    except TopologyInvalid as error:
        return error


def assert_loads_cleanly(text: str) -> None:
    """A Topology whose checks, expansion, plan and graph all run, or TopologyInvalid."""
    topology = loaded(text)
    if isinstance(topology, TopologyInvalid):
        assert topology.problems, "TopologyInvalid without a problem"
        assert all(str(problem) for problem in topology.problems)
        return
    check_references(topology)
    durability_problems(topology)
    mermaid(topology)
    resources = expanded(topology)
    if isinstance(resources, TopologyInvalid):  # a webhook naming an unregistered contract
        assert all(p.path.startswith("webhooks.") for p in resources.problems)
        return
    plan(resources, Resources(), None)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class TestTopologyLoaderFuzz:
    @FUZZ
    @given(text=st.text(max_size=300))
    def test_any_text_loads_or_is_refused_with_its_problems(self, text: str) -> None:
        assert_loads_cleanly(text)

    @FUZZ
    @given(document=documents)
    def test_any_yaml_document_loads_or_is_refused_with_its_problems(self, document: Any) -> None:
        assert_loads_cleanly(yaml.safe_dump(document))

    @FUZZ
    @given(text=mutated_reference())
    def test_the_reference_file_with_random_nodes_loads_or_is_refused(self, text: str) -> None:
        assert_loads_cleanly(text)

    def test_the_mutation_alphabet_reaches_into_every_section(self) -> None:
        """The mutations can touch every top-level section of the reference file."""
        assert {path[0] for path in REFERENCE_PATHS} == set(REFERENCE)
