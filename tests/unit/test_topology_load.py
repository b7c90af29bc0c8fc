"""Loading topology files: the reference file, and broken files with path-precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from fulfilment import TOPOLOGY_FILE

from topology import Duration, TopologyInvalid, TopologyNotFound, load, loads

EXCHANGES = "exchanges: {orders: {}, payments: {}}\n"


def problems_of(text: str) -> list[str]:
    """The problems, as printed, that loading `text` reports."""
    with pytest.raises(TopologyInvalid) as caught:
        loads(text, source="broken.yaml")
    return [str(p) for p in caught.value.problems]


class TestReferenceTopology:
    """The reference fleet's examples/fulfilment/fleet.yaml."""

    def test_the_reference_file_loads(self) -> None:
        """The file shipped with fleet is valid and holds the whole saga."""
        # Given / When
        topology = load(TOPOLOGY_FILE)
        # Then
        assert set(topology.exchanges) == {"orders", "inventory", "payments", "shipping"}
        assert set(topology.queues) == {
            "inventory",
            "payments",
            "shipping",
            "orders",
            "notifications",
            "order-deadlines",
            "order-events",
        }
        assert set(topology.workers) == {
            "inventory",
            "payments",
            "shipping",
            "orders",
            "notifications",
            "reporting",
        }

    def test_load_without_a_path_reads_the_projects_fleet_yaml(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The default file is ./fleet.yaml in the working directory, never the reference's."""
        # Given
        (tmp_path / "fleet.yaml").write_text("exchanges: {shop: {}}\n")
        monkeypatch.chdir(tmp_path)
        # When
        topology = load()
        # Then
        assert list(topology.exchanges) == ["shop"]

    def test_load_without_a_path_in_a_directory_without_one_names_the_fix(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No fleet.yaml: one problem saying where it looked and what to do."""
        # Given
        monkeypatch.chdir(tmp_path)
        # When
        with pytest.raises(TopologyNotFound) as caught:
            load()
        # Then
        [problem] = caught.value.problems
        assert f"there is no fleet.yaml in {tmp_path}" in problem.message
        assert "--file" in problem.message
        assert "fleet new DIR" in problem.message

    def test_durations_and_defaults_are_typed(self) -> None:
        """Delays become Durations; omitted settings take the documented defaults."""
        # Given / When
        topology = load(TOPOLOGY_FILE)
        # Then
        inventory = topology.queues["inventory"]
        assert inventory.retry.delays == [Duration(5_000), Duration(30_000), Duration(300_000)]
        assert inventory.type == "quorum"
        assert inventory.delivery_limit is None
        assert topology.queues["order-events"].type == "stream"
        assert topology.workers["payments"].replicas == 2
        assert topology.workers["notifications"].publish_to is None
        assert topology.workers["shipping"].prefetch == 64

    def test_an_entry_without_a_body_takes_every_default(self) -> None:
        """`orders:` with nothing after it is a topic exchange with defaults."""
        # Given
        text = "exchanges:\n  orders:\n"
        # When
        topology = loads(text)
        # Then
        assert topology.exchanges["orders"].type == "topic"
        assert topology.exchanges["orders"].durable is True

    def test_worker_lookup_names_the_known_workers(self) -> None:
        """Asking for a worker the file lacks lists the ones it has."""
        # Given
        topology = load(TOPOLOGY_FILE)
        # When
        with pytest.raises(KeyError) as caught:
            topology.worker("billing")
        # Then
        assert caught.value.args[0] == (
            "no worker 'billing' in the topology "
            "(known: inventory, notifications, orders, payments, reporting, shipping)"
        )


class TestBrokenTopology:
    """Broken files: every problem is reported, each with its path in the file."""

    def test_an_unknown_exchange_in_a_binding_names_the_binding(self) -> None:
        """A typo in a binding's exchange points at that binding and lists the real ones."""
        # Given
        text = EXCHANGES + (
            "queues:\n"
            "  inventory:\n"
            "    bind:\n"
            "      - {exchange: orders, routing_key: order.placed}\n"
            "      - {exchange: order, routing_key: payment.declined}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "queues.inventory.bind[1].exchange: unknown exchange 'order' (known: orders, payments)"
        ]

    def test_an_unknown_exchange_says_when_none_are_declared(self) -> None:
        """Without an exchanges section, the hint says so instead of listing nothing."""
        # Given
        text = "queues:\n  inventory: {bind: [{exchange: orders}]}\n"
        # When / Then
        assert problems_of(text) == [
            "queues.inventory.bind[0].exchange: unknown exchange 'orders' (none are declared)"
        ]

    def test_a_duplicate_name_is_refused_with_both_lines(self) -> None:
        """YAML would let the second entry silently replace the first; fleet refuses it."""
        # Given
        text = EXCHANGES + (
            "queues:\n"
            "  inventory: {bind: [{exchange: orders}]}\n"
            "  inventory: {bind: [{exchange: payments}]}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "line 4, column 3: invalid YAML: duplicate name 'inventory' (first defined on line 3)"
        ]

    def test_a_bad_duration_names_the_delay(self) -> None:
        """A delay that is not a number and a unit points at its index."""
        # Given
        text = EXCHANGES + (
            "queues:\n  inventory:\n    bind: [{exchange: orders}]\n"
            "    retry: {delays: [5s, 30x, 5m]}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "queues.inventory.retry.delays[1]: invalid duration '30x': write a whole number "
            "and a unit, like 250ms, 5s, 30s, 5m, 1h or 1d"
        ]

    def test_a_duration_without_a_unit_is_refused(self) -> None:
        """`30` could be seconds or milliseconds, so it is neither."""
        # Given
        text = EXCHANGES + "queues:\n  a: {bind: [{exchange: orders}], retry: {backoff: 30}}\n"
        # When
        problems = problems_of(text)
        # Then
        assert problems == [
            "queues.a.retry.backoff: invalid duration 30: write a whole number "
            "and a unit, like 250ms, 5s, 30s, 5m, 1h or 1d"
        ]

    def test_a_zero_duration_is_refused(self) -> None:
        """A retry delay of nothing is no delay at all."""
        # Given
        text = EXCHANGES + "queues:\n  a: {bind: [{exchange: orders}], retry: {delays: [0s]}}\n"
        # When / Then
        assert problems_of(text) == ["queues.a.retry.delays[0]: a duration must be positive"]

    def test_a_delay_listed_twice_is_refused(self) -> None:
        """30s and 30000ms would derive the same retry queue."""
        # Given
        text = EXCHANGES + (
            "queues:\n  a: {bind: [{exchange: orders}], retry: {delays: [30s, 30000ms]}}\n"
        )
        # When / Then
        assert problems_of(text) == ["queues.a.retry.delays[1]: delay 30s is listed twice"]

    def test_an_unknown_queue_type_lists_the_valid_types(self) -> None:
        """The error says which queue types exist."""
        # Given
        text = EXCHANGES + "queues:\n  inventory: {type: lazy, bind: [{exchange: orders}]}\n"
        # When / Then
        assert problems_of(text) == [
            "queues.inventory.type: invalid enum value 'lazy' (valid: quorum, classic, stream)"
        ]

    def test_an_unknown_exchange_type_lists_the_valid_types(self) -> None:
        """The same holds for exchanges."""
        # Given
        text = "exchanges:\n  orders: {type: topix}\n"
        # When / Then
        assert problems_of(text) == [
            "exchanges.orders.type: invalid enum value 'topix' "
            "(valid: topic, direct, fanout, headers)"
        ]

    def test_an_unknown_field_lists_the_valid_fields(self) -> None:
        """A typo in a setting is an error that names the settings that exist."""
        # Given
        text = EXCHANGES + "queues:\n  a: {bind: [{exchange: orders, routing_kee: order.#}]}\n"
        # When / Then
        assert problems_of(text) == [
            "queues.a.bind[0]: object contains unknown field 'routing_kee' "
            "(valid: exchange, routing_key, arguments)"
        ]

    def test_an_unknown_field_of_a_queue_lists_the_queue_fields(self) -> None:
        """A worker setting written on a queue is caught, with the queue's settings listed."""
        # Given
        text = EXCHANGES + "queues:\n  a: {bind: [{exchange: orders}], prefetch: 10}\n"
        # When / Then
        assert problems_of(text) == [
            "queues.a: object contains unknown field 'prefetch' "
            "(valid: type, durable, bind, retry, delivery_limit, arguments, delay, "
            "stream, partitions, key)"
        ]

    def test_a_worker_on_an_unknown_queue_lists_the_queues(self) -> None:
        """A worker must consume a queue the file declares."""
        # Given
        text = EXCHANGES + (
            "queues:\n  inventory: {bind: [{exchange: orders}]}\n"
            "workers:\n  inventory: {module: fulfilment.workers.inventory, queue: inventroy}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "workers.inventory.queue: unknown queue 'inventroy' (known: inventory)"
        ]

    def test_a_worker_without_a_module_is_refused(self) -> None:
        """Required settings are named when missing."""
        # Given
        text = EXCHANGES + (
            "queues:\n  inventory: {bind: [{exchange: orders}]}\n"
            "workers:\n  inventory: {queue: inventory}\n"
        )
        # When / Then
        assert problems_of(text) == ["workers.inventory: object missing required field 'module'"]

    def test_a_worker_publishing_to_an_unknown_exchange_is_refused(self) -> None:
        """publish_to must name a declared exchange."""
        # Given
        text = EXCHANGES + (
            "queues:\n  a: {bind: [{exchange: orders}]}\n"
            "workers:\n  a: {module: m, queue: a, publish_to: inventory}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "workers.a.publish_to: unknown exchange 'inventory' (known: orders, payments)"
        ]

    def test_a_worker_on_a_stream_loads(self) -> None:
        """A worker may read a stream (docs/concepts/streams.md); it starts at `next`
        unless told otherwise."""
        # Given
        text = EXCHANGES + (
            "queues:\n  audit: {type: stream, bind: [{exchange: orders}]}\n"
            "workers:\n  audit: {module: m, queue: audit}\n"
        )
        # When / Then
        assert loads(text).workers["audit"].start is None

    def test_a_zero_prefetch_is_refused(self) -> None:
        """Counts are positive."""
        # Given
        text = EXCHANGES + (
            "queues:\n  a: {bind: [{exchange: orders}]}\n"
            "workers:\n  a: {module: m, queue: a, prefetch: 0}\n"
        )
        # When / Then
        assert problems_of(text) == ["workers.a.prefetch: expected 'int' >= 1"]

    def test_commit_batch_is_auto_a_count_or_refused_with_the_choices(self) -> None:
        """The inbox's grouping: `auto` unless set, a count of 1 or more, nothing else."""
        worker = (
            "queues:\n  a: {bind: [{exchange: orders}]}\nworkers:\n  a: {module: m, queue: a%s}\n"
        )
        assert loads(EXCHANGES + worker % "").workers["a"].commit_batch == "auto"
        assert loads(EXCHANGES + worker % ", commit_batch: 32").workers["a"].commit_batch == 32
        assert problems_of(EXCHANGES + worker % ", commit_batch: fast") == [
            "workers.a.commit_batch: invalid enum value 'fast' (valid: a whole number, auto)"
        ]
        assert problems_of(EXCHANGES + worker % ", commit_batch: 0") == [
            "workers.a.commit_batch: expected 'int' >= 1"
        ]

    def test_a_delivery_limit_on_a_stream_is_refused(self) -> None:
        """Streams never redeliver, so a delivery limit there is a mistake."""
        # Given
        text = EXCHANGES + (
            "queues:\n  a: {type: stream, delivery_limit: 5, bind: [{exchange: orders}]}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "queues.a.delivery_limit: streams have no delivery limit: nothing is acked or "
            "redelivered"
        ]

    def test_a_delivery_limit_on_a_classic_queue_is_enforced_by_the_workers(self) -> None:
        """Classic queues accept a delivery limit: fleet's workers count deliveries there."""
        # Given
        text = EXCHANGES + (
            "queues:\n  a: {type: classic, delivery_limit: 5, bind: [{exchange: orders}]}\n"
        )
        # When / Then
        assert loads(text).queues["a"].delivery_limit == 5

    def test_a_non_durable_quorum_queue_is_refused(self) -> None:
        """A setting the broker would refuse is reported at load, with its path."""
        # Given
        text = EXCHANGES + "queues:\n  a: {durable: false, bind: [{exchange: orders}]}\n"
        # When
        with pytest.raises(TopologyInvalid) as caught:
            loads(text, source="broken.yaml")
        # Then
        assert [p.path for p in caught.value.problems] == ["queues.a.durable"]

    def test_an_argument_fleet_manages_is_refused(self) -> None:
        """Setting x-message-ttl by hand would fight the retry policy."""
        # Given
        text = EXCHANGES + (
            "queues:\n  a: {bind: [{exchange: orders}], arguments: {x-message-ttl: 1000}}\n"
        )
        # When / Then
        assert problems_of(text) == [
            "queues.a.arguments.x-message-ttl: set by fleet from the queue's type, retry "
            "and delivery_limit; remove it"
        ]

    def test_a_derived_queue_name_is_reserved(self) -> None:
        """Nobody writes <q>.dead by hand: fleet derives it."""
        # Given
        text = EXCHANGES + "queues:\n  inventory.dead: {bind: [{exchange: orders}]}\n"
        # When / Then
        assert problems_of(text) == [
            "queues.inventory.dead: names ending in '.dead' or holding '.retry.' are "
            "reserved for the queues fleet derives"
        ]

    def test_a_failure_exchange_name_is_reserved(self) -> None:
        """Nobody declares <q>.failures by hand: fleet derives it for each consumed queue."""
        # Given
        text = "exchanges: {orders: {}, inventory.failures: {type: direct}}\n"
        # When / Then
        assert problems_of(text) == [
            "exchanges.inventory.failures: names ending in '.failures' are reserved for the "
            "failure exchanges fleet derives"
        ]

    def test_several_problems_are_reported_at_once(self) -> None:
        """One bad entry does not hide the problems of the next."""
        # Given
        text = EXCHANGES + (
            "queues:\n"
            "  inventory: {type: lazy, bind: [{exchange: orders}]}\n"
            "  payments: {bind: [{exchange: order}]}\n"
            "  shipping: {bind: [{exchange: orders}], retry: {delays: [5s, soon]}}\n"
            "workers:\n"
            "  shipping: {module: m, queue: shiping}\n"
            "  orders: {queue: payments}\n"
        )
        # When
        problems = problems_of(text)
        # Then
        assert sorted(problems) == sorted(
            [
                "queues.inventory.type: invalid enum value 'lazy' (valid: quorum, classic, stream)",
                "queues.payments.bind[0].exchange: unknown exchange 'order' "
                "(known: orders, payments)",
                "queues.shipping.retry.delays[1]: invalid duration 'soon': write a whole "
                "number and a unit, like 250ms, 5s, 30s, 5m, 1h or 1d",
                "workers.shipping.queue: unknown queue 'shiping' "
                "(known: inventory, payments, shipping)",
                "workers.orders: object missing required field 'module'",
            ]
        )

    def test_the_error_message_counts_and_lists_every_problem(self) -> None:
        """TopologyInvalid prints the source, a count, and one indented line per problem."""
        # Given
        text = "exchanges:\n  a: {type: topix}\n  b: {type: fan}\n"
        # When
        with pytest.raises(TopologyInvalid) as caught:
            loads(text, source="broken.yaml")
        # Then
        assert str(caught.value) == (
            "broken.yaml: 2 problems\n"
            "  exchanges.a.type: invalid enum value 'topix' "
            "(valid: topic, direct, fanout, headers)\n"
            "  exchanges.b.type: invalid enum value 'fan' (valid: topic, direct, fanout, headers)"
        )
        assert isinstance(caught.value, ValueError)

    def test_warnings_alone_do_not_refuse_a_file(self) -> None:
        """A queue without bindings is suspicious, not fatal."""
        # Given
        text = "queues:\n  lonely: {}\n"
        # When
        topology = loads(text)
        # Then
        assert set(topology.queues) == {"lonely"}


class TestUnreadableTopology:
    """Files that are not a topology at all."""

    def test_invalid_yaml_names_the_line_and_column(self) -> None:
        """A YAML syntax error points at where the parser stopped."""
        # Given
        text = "exchanges:\n  orders: {type: topic\nqueues: {}\n"
        # When
        problems = problems_of(text)
        # Then
        assert problems == [
            "line 3, column 7: invalid YAML: while parsing a flow mapping: "
            "expected ',' or '}', but got ':'"
        ]

    def test_a_tab_indent_names_its_line(self) -> None:
        """YAML forbids tabs for indentation; the line is named."""
        # Given
        text = "exchanges:\n\torders: {}\n"
        # When
        problems = problems_of(text)
        # Then
        assert len(problems) == 1
        assert problems[0].startswith("line 2, column 1: invalid YAML: ")

    @pytest.mark.parametrize("text", ["", "# only a comment\n"])
    def test_an_empty_file_is_refused(self, text: str) -> None:
        """A file that declares nothing is a mistake, reported as one problem."""
        # Given / When / Then
        with pytest.raises(TopologyInvalid) as caught:
            loads(text, source="empty.yaml")
        assert len(caught.value.problems) == 1

    @pytest.mark.parametrize(
        ("text", "kind"), [("- orders\n- payments\n", "a list"), ("orders\n", "a string")]
    )
    def test_a_top_level_that_is_not_a_mapping_is_refused(self, text: str, kind: str) -> None:
        """The top level must be a mapping of sections."""
        # Given / When / Then
        assert problems_of(text) == [f"expected a mapping at the top level, got {kind}"]

    def test_a_section_that_is_not_a_mapping_is_refused(self) -> None:
        """Queues are named, so the section is a mapping of name to queue."""
        # Given
        text = "queues: [inventory, payments]\n"
        # When / Then
        assert problems_of(text) == ["queues: expected a mapping of name to Queue, got a list"]

    def test_an_unknown_section_lists_the_valid_sections(self) -> None:
        """A misspelt section is not silently ignored."""
        # Given
        text = "exchange: {orders: {}}\n"
        # When / Then
        assert problems_of(text) == [
            "exchange: unknown section "
            "(valid: version, exchanges, queues, workers, webhooks, processes, sagas, contracts, "
            "ingress, metrics, broker, access, outbox)"
        ]

    def test_an_unsupported_version_is_refused(self) -> None:
        """Only version 1 of the file format exists."""
        # Given
        text = "version: 2\n"
        # When / Then
        assert problems_of(text) == ["version: unsupported version 2 (valid: 1)"]

    def test_a_missing_file_names_the_path(self, tmp_path: Path) -> None:
        """An unreadable path is one problem, with the path as the source."""
        # Given
        path = tmp_path / "nowhere.yaml"
        # When
        with pytest.raises(TopologyInvalid) as caught:
            load(path)
        # Then
        assert caught.value.source == str(path)
        assert [str(p) for p in caught.value.problems] == [
            "cannot read file: No such file or directory"
        ]

    def test_a_directory_is_not_a_file(self, tmp_path: Path) -> None:
        """Pointing --file at a directory is reported, not a crash."""
        # Given / When
        with pytest.raises(TopologyInvalid) as caught:
            load(tmp_path)
        # Then
        assert [str(p) for p in caught.value.problems] == ["cannot read file: Is a directory"]

    def test_problems_in_a_file_name_the_file(self, tmp_path: Path) -> None:
        """load() reports the path it read as the source of the problems."""
        # Given
        path = tmp_path / "fleet.yaml"
        path.write_text("exchanges:\n  orders: {type: topix}\n", encoding="utf-8")
        # When
        with pytest.raises(TopologyInvalid) as caught:
            load(path)
        # Then
        assert str(caught.value).startswith(f"{path}: 1 problem\n  exchanges.orders.type: ")


class TestProjectSections:
    """`contracts`, `processes` and `sagas`: what a project adds to its fleet."""

    def test_contract_modules_processes_and_sagas_are_read(self) -> None:
        """Module names, commands with their environment, and each saga's start and ends."""
        # Given
        text = """
contracts: [shop.contracts, shop.more]
processes:
  payments-sandbox: {command: [fleet, standins, run], env: {PORT: "9"}}
sagas:
  signup:
    starts: CustomerSignedUp
    ends: {welcomed: WelcomeSent, lost: [SignupAbandoned, SignupRefused]}
"""
        # When
        topology = loads(text)
        # Then
        assert topology.contracts == ["shop.contracts", "shop.more"]
        assert topology.processes["payments-sandbox"].command == ["fleet", "standins", "run"]
        assert topology.processes["payments-sandbox"].env == {"PORT": "9"}
        assert topology.sagas["signup"].starts == "CustomerSignedUp"
        assert topology.sagas["signup"].ending() == {
            "WelcomeSent": "welcomed",
            "SignupAbandoned": "lost",
            "SignupRefused": "lost",
        }

    def test_a_contract_module_that_is_no_module_name_is_refused_with_the_fix(self) -> None:
        """A path or a file name in `contracts:` names its entry and shows the form."""
        assert problems_of("contracts: [shop/contracts.py]") == [
            "contracts[0]: expected 'str' matching regex "
            "'^[A-Za-z_][A-Za-z0-9_]*(\\\\.[A-Za-z_][A-Za-z0-9_]*)*$': list the modules "
            "holding the contracts, like [shop.contracts]"
        ]

    def test_a_saga_needs_an_end_and_a_process_a_command(self) -> None:
        """Empty `ends` and an empty `command` are mistakes, each with its path."""
        problems = problems_of(
            "sagas: {signup: {starts: A, ends: {}}}\nprocesses: {tool: {command: []}}\n"
        )
        assert problems == [
            "processes.tool.command: expected 'array' of length >= 1",
            "sagas.signup.ends: expected 'object' of length >= 1",
        ]
