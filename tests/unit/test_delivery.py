"""A delivery is read once into a value: fleet's headers of the wrong type count as
absent, a version is a positive integer or invalid, and reading never raises."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from contracts import derive_message_id
from workers.runtime import headers as h
from workers.runtime.delivery import count, read_delivery, version_of


def delivered(body: bytes = b"{}", **properties: Any) -> DeliveredMessage:
    deliver = Basic.Deliver("ctag", 7, True, "orders", "order.placed")
    header = ContentHeader(0, len(body), Basic.Properties(**properties))
    return DeliveredMessage(delivery=deliver, header=header, body=body, channel=None)  # type: ignore[arg-type]


class TestVersion:
    @pytest.mark.parametrize(("value", "version"), [(1, 1), (2, 2), ("3", 3), (b"4", 4)])
    def test_positive_integers_and_their_digits_are_versions(
        self, value: Any, version: int
    ) -> None:
        assert version_of({h.VERSION: value}) == version

    def test_no_header_is_version_one(self) -> None:
        assert version_of({}) == 1

    @pytest.mark.parametrize(
        "value",
        ["abc", True, False, [1], {"v": 1}, 0, -1, "0", "-2", " 2", "٣", Decimal("2"), 2.0, None,
         "9" * 30],
    )  # fmt: skip
    def test_anything_else_is_no_version(self, value: Any) -> None:
        assert version_of({h.VERSION: value}) is None


class TestCounters:
    @pytest.mark.parametrize(("value", "expected"), [(3, 3), (0, 0), (-1, 0), ("3", 0), (True, 0),
                                                     ([1], 0), (None, 0)])  # fmt: skip
    def test_only_non_negative_ints_count(self, value: Any, expected: int) -> None:
        assert count(value) == expected


class TestReadDelivery:
    def test_a_plain_message_is_read_with_its_ids_and_counters(self) -> None:
        # Given
        message = delivered(
            message_id="m-1",
            correlation_id="c-1",
            message_type="OrderPlaced",
            headers={h.ATTEMPTS: 2, h.RETRIES: 1, h.CAUSATION_ID: "m-0", h.VERSION: 1},
        )
        # When
        delivery = read_delivery(message)
        # Then
        assert (delivery.tag, delivery.redelivered) == (7, True)
        assert (delivery.exchange, delivery.routing_key) == ("orders", "order.placed")
        assert (delivery.message_id, delivery.correlation_id, delivery.causation_id) == (
            "m-1",
            "c-1",
            "m-0",
        )
        assert (delivery.type_name, delivery.version) == ("OrderPlaced", 1)
        assert (delivery.attempts, delivery.retries, delivery.deliveries) == (2, 1, None)
        assert delivery.undecodable is None

    def test_a_message_without_ids_gets_the_stable_derived_id_as_both(self) -> None:
        # When
        delivery = read_delivery(delivered(b'{"a": 1}'))
        # Then
        assert delivery.message_id == derive_message_id("order.placed", b'{"a": 1}')
        assert delivery.correlation_id == delivery.message_id

    def test_fleet_headers_of_the_wrong_type_count_as_absent(self) -> None:
        # Given
        message = delivered(
            headers={h.ATTEMPTS: "9", h.RETRIES: [1], h.CAUSATION_ID: 5, h.DELIVERIES: "x"}
        )
        # When
        delivery = read_delivery(message)
        # Then
        assert (delivery.attempts, delivery.retries, delivery.causation_id) == (0, 0, None)
        assert delivery.deliveries == 0  # present, so the message is a suspect; counted as 0

    def test_what_the_decoder_could_not_read_is_carried_as_the_reason(self) -> None:
        # When
        delivery = read_delivery(delivered(headers={h.UNDECODABLE: "property timestamp ..."}))
        # Then
        assert delivery.undecodable == "property timestamp ..."

    def test_ids_holding_nul_become_a_stable_digest_postgresql_can_store(self) -> None:
        # Given: ids PostgreSQL's text type refuses
        message = delivered(
            message_id="m\x001", correlation_id="c\x00", headers={h.CAUSATION_ID: "x\x00"}
        )
        # When
        first, again = read_delivery(message), read_delivery(message)
        # Then
        assert first.message_id.startswith("nul-")
        assert "\x00" not in first.message_id + first.correlation_id + (first.causation_id or "")
        assert first.message_id == again.message_id
        assert first.message_id != read_delivery(delivered(message_id="m\x002")).message_id
