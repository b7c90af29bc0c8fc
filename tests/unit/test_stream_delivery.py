"""A stream message read back into fleet's Delivery: AMQP 0.9.1's properties and
headers from the AMQP 1.0 form RabbitMQ keeps, with where it was read."""

from __future__ import annotations

from rstream import AMQPMessage
from rstream._pyamqp.message import Properties

from workers.runtime import headers as h
from workers.streams.message import stream_delivery


def message(**application: object) -> AMQPMessage:
    return AMQPMessage(
        body=b'{"sale_id": "s-1"}',
        properties=Properties(
            message_id=b"m-1", correlation_id=b"saga-1", content_type=b"application/json"
        ),
        application_properties={
            b"x-basic-type": b"StreamSale",
            b"x-basic-app-id": b"shop",
            **{k.encode(): v for k, v in application.items()},
        },
        message_annotations={b"x-exchange": b"sales", b"x-routing-key": b"sale.made"},
    )


class TestStreamDelivery:
    def test_the_properties_and_headers_of_a_0_9_1_publish_come_back(self) -> None:
        delivery = stream_delivery(
            message(version=2, **{"causation-id": b"m-0"}),
            stream="sales-0",
            offset=41,
            timestamp_ms=1_700_000_000_000,
        )
        assert (delivery.type_name, delivery.version) == ("StreamSale", 2)
        assert (delivery.message_id, delivery.correlation_id) == ("m-1", "saga-1")
        assert delivery.causation_id == "m-0"
        assert (delivery.exchange, delivery.routing_key) == ("sales", "sale.made")
        assert delivery.body == b'{"sale_id": "s-1"}'
        assert delivery.message.header.properties.app_id == "shop"
        assert delivery.headers[h.STREAM] == "sales-0"
        assert delivery.headers[h.STREAM_OFFSET] == 41
        assert delivery.headers[h.STREAM_TIMESTAMP] == 1_700_000_000_000
        assert "x-basic-type" not in delivery.headers

    def test_a_version_sent_as_text_is_read_as_a_number(self) -> None:
        assert stream_delivery(message(version=b"3"), stream="s", offset=0).version == 3

    def test_a_version_that_is_no_number_is_recorded_as_invalid(self) -> None:
        assert stream_delivery(message(version=b"two"), stream="s", offset=0).version is None
