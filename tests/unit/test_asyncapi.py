"""The AsyncAPI document `fleet asyncapi` prints, built from a small fleet with every
kind of flow (tests/fixtures/catalogue_fleet.py); no broker, no parser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import decode
from tests.fixtures import catalogue_fleet as fleet
from workers.asyncapi import SCHEMA_FORMAT, asyncapi_document

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """The fixture fleet's document."""
    return asyncapi_document(fleet.topology(), fleet.flows(), title="shop", version="1.2.0")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """The object a local `$ref` points at (KeyError if it points nowhere)."""
    node: Any = doc
    for token in ref.removeprefix("#/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    """Every `$ref` in a document, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def extensions(node: Any) -> Iterator[str]:
    """Every x-fleet-* key in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("x-fleet-"):
                yield key
            yield from extensions(value)
    elif isinstance(node, list):
        for item in node:
            yield from extensions(item)


class TestTheDocument:
    def test_it_is_asyncapi_3_with_the_projects_name_and_version(self, doc: dict[str, Any]) -> None:
        """The document declares AsyncAPI 3.0.0 and the title and version it was given."""
        assert doc["asyncapi"] == "3.0.0"
        assert doc["info"]["title"] == "shop"
        assert doc["info"]["version"] == "1.2.0"
        assert doc["defaultContentType"] == "application/json"

    def test_every_reference_points_at_something(self, doc: dict[str, Any]) -> None:
        """Each `$ref` resolves within the document."""
        found = list(refs(doc))
        assert found
        for ref in found:
            assert resolve(doc, ref) is not None, ref

    def test_every_operations_messages_belong_to_its_channel(self, doc: dict[str, Any]) -> None:
        """An operation lists only messages of the channel it names, as AsyncAPI 3 requires."""
        for name, operation in doc["operations"].items():
            channel = operation["channel"]["$ref"]
            for message in operation["messages"]:
                assert message["$ref"].startswith(channel + "/messages/"), name

    def test_the_brokers_nodes_are_servers_without_their_credentials(
        self, doc: dict[str, Any]
    ) -> None:
        """broker.urls become servers: host and port, the password left out."""
        assert doc["servers"] == {
            "broker": {
                "host": "rabbit.internal:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "A RabbitMQ node of this fleet (the topology's broker.urls).",
            }
        }
        assert "s3cret" not in msgspec.json.encode(doc).decode()

    def test_every_extension_it_uses_is_documented_in_the_manual(self, doc: dict[str, Any]) -> None:
        """Each x-fleet-* key is a term of docs/operations/catalogue.md, one by one."""
        manual = (ROOT / "docs" / "operations" / "catalogue.md").read_text()
        documented = set(re.findall(r"^`(x-fleet-[a-z-]+)`", manual, re.M))
        used = set(extensions(doc))
        assert len(used) == 18
        assert used <= documented, used - documented

    def test_the_sagas_are_an_extension(self, doc: dict[str, Any]) -> None:
        """x-fleet-sagas: what starts each saga, and the events that end it, by status."""
        assert doc["x-fleet-sagas"] == {
            "signup": {"starts": "SignedUp", "ends": {"welcomed": ["Welcomed"]}}
        }


class TestChannels:
    def test_an_exchange_is_a_routing_key_channel_with_its_type_and_durability(
        self, doc: dict[str, Any]
    ) -> None:
        """Each exchange: AMQP binding `is: routingKey`, its type and durability, its vhost."""
        audit = doc["channels"]["exchange.audit"]
        assert audit["address"] == "audit"
        assert audit["bindings"]["amqp"] == {
            "is": "routingKey",
            "exchange": {
                "name": "audit",
                "type": "fanout",
                "durable": False,
                "autoDelete": False,
                "vhost": "shop",
            },
            "bindingVersion": "0.3.0",
        }

    def test_a_queue_is_a_queue_channel_with_its_type_and_bindings(
        self, doc: dict[str, Any]
    ) -> None:
        """Each queue: `is: queue`, its durability, its type and routing-key bindings."""
        welcome = doc["channels"]["queue.welcome"]
        assert welcome["bindings"]["amqp"]["is"] == "queue"
        assert welcome["bindings"]["amqp"]["queue"]["name"] == "welcome"
        assert welcome["bindings"]["amqp"]["queue"]["durable"] is True
        assert welcome["x-fleet-queue-type"] == "quorum"
        assert welcome["x-fleet-bindings"] == [
            {"exchange": "shop", "channel": "exchange.shop", "routingKey": "customer.signed_up"},
            {
                "exchange": "shop",
                "channel": "exchange.shop",
                "routingKey": "fault.customer.signed_up",
            },
        ]

    def test_a_work_queue_names_its_retry_tiers_dead_letter_queue_and_delivery_limit(
        self, doc: dict[str, Any]
    ) -> None:
        """x-fleet-retry lists the derived <queue>.retry.<delay> queues; x-fleet-dead-letter
        and x-fleet-delivery-limit say where a message is parked, and after how many deliveries."""
        welcome = doc["channels"]["queue.welcome"]
        assert welcome["x-fleet-retry"] == {
            "attempts": 2,
            "backoff": "50ms",
            "maxBackoff": "1s",
            "tiers": [
                {"delay": "1s", "delayMs": 1000, "queue": "welcome.retry.1s"},
                {"delay": "1m", "delayMs": 60000, "queue": "welcome.retry.1m"},
            ],
        }
        assert welcome["x-fleet-dead-letter"] == {
            "queue": "welcome.dead",
            "failureExchange": "welcome.failures",
        }
        assert welcome["x-fleet-delivery-limit"] == 7
        assert welcome["x-fleet-arguments"]["x-delivery-limit"] == 7

    def test_a_delay_queue_says_where_it_hands_messages_and_has_no_retries(
        self, doc: dict[str, Any]
    ) -> None:
        """x-fleet-delay: the ttl and the queue messages go to next; no retry tiers."""
        reminders = doc["channels"]["queue.reminders"]
        assert reminders["x-fleet-delay"] == {
            "ttl": "10s",
            "ttlMs": 10000,
            "then": "welcome",
            "channel": "queue.welcome",
        }
        assert "x-fleet-retry" not in reminders
        assert "x-fleet-dead-letter" not in reminders

    def test_a_stream_has_neither_retries_nor_a_dead_letter_queue(
        self, doc: dict[str, Any]
    ) -> None:
        """A stream is read from an offset: nothing is retried or parked."""
        log = doc["channels"]["queue.log"]
        assert log["x-fleet-queue-type"] == "stream"
        assert not {"x-fleet-retry", "x-fleet-dead-letter", "x-fleet-delivery-limit"} & set(log)

    def test_a_webhook_subscription_has_the_queue_fleet_derives(self, doc: dict[str, Any]) -> None:
        """webhook.<name> is a channel, bound to the subscribed events, with its own tiers."""
        crm = doc["channels"]["queue.webhook.crm"]
        assert crm["x-fleet-bindings"] == [
            {"exchange": "shop", "channel": "exchange.shop", "routingKey": "customer.signed_up"}
        ]
        assert crm["x-fleet-retry"] == {
            "attempts": 1,
            "tiers": [
                {"delay": "5s", "delayMs": 5000, "queue": "webhook.crm.retry.5s"},
                {"delay": "1m", "delayMs": 60000, "queue": "webhook.crm.retry.1m"},
            ],
        }
        assert crm["x-fleet-dead-letter"]["queue"] == "webhook.crm.dead"

    def test_a_channel_holds_the_messages_that_travel_through_it(self, doc: dict[str, Any]) -> None:
        """An exchange holds what is sent to it or reaches a consumer through it; a queue
        what its bindings route to it, and what its consumer takes."""
        shop = doc["channels"]["exchange.shop"]["messages"]
        assert sorted(shop) == [
            "Fault.SignedUp.v2",
            "Reminder.v1",
            "SignedUp.v1",
            "SignedUp.v2",
            "Welcomed.v1",
        ]
        assert sorted(doc["channels"]["queue.reminders"]["messages"]) == ["Reminder.v1"]
        assert sorted(doc["channels"]["queue.welcome"]["messages"]) == [
            "Fault.SignedUp.v2",
            "SignedUp.v1",
            "SignedUp.v2",
        ]
        assert doc["channels"]["queue.log"]["messages"] == {}


class TestOperations:
    def test_a_worker_receives_what_it_handles_and_what_reaches_it_by_upcasting(
        self, doc: dict[str, Any]
    ) -> None:
        """The receive operation lists the handled version and those converted to it."""
        receive = doc["operations"]["worker.welcome.receive"]
        assert receive["action"] == "receive"
        assert receive["channel"] == {"$ref": "#/channels/queue.welcome"}
        assert [m["$ref"].rsplit("/", 1)[-1] for m in receive["messages"]] == [
            "SignedUp.v2",
            "SignedUp.v1",
        ]
        assert receive["x-fleet-converted"] == ["SignedUp.v1"]
        assert receive["bindings"]["amqp"] == {"ack": True, "bindingVersion": "0.3.0"}
        assert receive["x-fleet-worker"] == {
            "name": "welcome",
            "module": "tests.fixtures.catalogue_fleet",
            "prefetch": 8,
            "concurrency": 2,
            "replicas": 1,
        }

    def test_a_worker_sends_its_follow_on_events_mandatory_and_its_terminal_ones_not(
        self, doc: dict[str, Any]
    ) -> None:
        """Emitted events go to publish_to with mandatory; terminal events without, listed
        in x-fleet-terminal."""
        send = doc["operations"]["worker.welcome.send"]
        terminal = doc["operations"]["worker.welcome.send-terminal"]
        assert send["channel"] == {"$ref": "#/channels/exchange.shop"}
        assert send["bindings"]["amqp"]["mandatory"] is True
        assert send["bindings"]["amqp"]["deliveryMode"] == 2
        assert [m["$ref"].rsplit("/", 1)[-1] for m in send["messages"]] == ["Reminder.v1"]
        assert terminal["bindings"]["amqp"]["mandatory"] is False
        assert terminal["x-fleet-terminal"] == ["Welcomed"]
        assert "x-fleet-terminal" not in send

    def test_a_worker_with_faults_announces_a_fault_of_each_contract_it_handles(
        self, doc: dict[str, Any]
    ) -> None:
        """The faults operation sends Fault[<contract>] to the faults exchange, not mandatory."""
        faults = doc["operations"]["worker.welcome.faults"]
        assert faults["channel"] == {"$ref": "#/channels/exchange.shop"}
        assert [m["$ref"].rsplit("/", 1)[-1] for m in faults["messages"]] == ["Fault.SignedUp.v2"]
        assert faults["bindings"]["amqp"]["mandatory"] is False
        assert faults["x-fleet-faults"] == {"of": ["SignedUp.v2"]}

    def test_an_ingress_route_sends_its_contract_with_its_auth_and_reply(
        self, doc: dict[str, Any]
    ) -> None:
        """A route is a send of the ingress; x-fleet-ingress has its path and auth, and a
        synchronous route's reply is the operation's reply."""
        route = doc["operations"]["ingress.signups"]
        assert route["action"] == "send"
        assert route["channel"] == {"$ref": "#/channels/exchange.shop"}
        assert route["bindings"]["amqp"]["mandatory"] is True
        assert route["x-fleet-ingress"]["path"] == "/signups"
        assert route["x-fleet-ingress"]["auth"] == {
            "type": "bearer",
            "secretsEnv": ["SIGNUP_TOKEN"],
        }
        assert route["x-fleet-ingress"]["routingKey"] == "customer.signed_up"
        assert route["reply"] == {
            "channel": {"$ref": "#/channels/exchange.shop"},
            "messages": [{"$ref": "#/channels/exchange.shop/messages/Welcomed.v1"}],
        }
        waiting = doc["operations"]["ingress.signups.reply"]
        assert waiting["action"] == "receive"
        assert waiting["bindings"]["amqp"]["ack"] is False

    def test_a_webhook_subscription_receives_from_its_queue(self, doc: dict[str, Any]) -> None:
        """The dispatcher's operation names the URL, the signature and the secrets' variables."""
        crm = doc["operations"]["webhook.crm.receive"]
        assert crm["channel"] == {"$ref": "#/channels/queue.webhook.crm"}
        assert [m["$ref"].rsplit("/", 1)[-1] for m in crm["messages"]] == ["SignedUp.v2"]
        assert crm["x-fleet-webhook"] == {
            "subscription": "crm",
            "url": "https://crm.example.com/hooks/fleet",
            "urlEnv": None,
            "signature": "standard-webhooks",
            "secretsEnv": ["CRM_SECRET"],
            "timeout": "10s",
            "allowPrivate": False,
            "allowHosts": [],
            "events": [{"contract": "SignedUp", "version": 2}],
        }


class TestMessages:
    def test_each_contract_version_is_a_message_named_by_its_type_property(
        self, doc: dict[str, Any]
    ) -> None:
        """One message per (wire name, version); `messageType` is the AMQP type property."""
        messages = doc["components"]["messages"]
        assert sorted(messages) == [
            "Fault.SignedUp.v2",
            "Reminder.v1",
            "SignedUp.v1",
            "SignedUp.v2",
            "Welcomed.v1",
        ]
        signed_up = messages["SignedUp.v2"]
        assert signed_up["name"] == "SignedUp"
        assert signed_up["summary"] == "A customer made an account, with where they live."
        assert signed_up["bindings"]["amqp"] == {
            "messageType": "SignedUp",
            "bindingVersion": "0.3.0",
        }
        assert signed_up["x-fleet-routing-key"] == "customer.signed_up"
        assert signed_up["x-fleet-version"] == 2

    def test_the_payload_is_the_contracts_json_schema_as_draft_07(
        self, doc: dict[str, Any]
    ) -> None:
        """The payload points into components.schemas, where nested Structs are shared and
        tuples use draft-07's items list."""
        payload = doc["components"]["messages"]["SignedUp.v2"]["payload"]
        assert payload["schemaFormat"] == SCHEMA_FORMAT
        schema = resolve(doc, payload["schema"]["$ref"])
        assert schema["required"] == ["customer_id", "address"]
        assert schema["properties"]["address"] == {"$ref": "#/components/schemas/Address"}
        assert schema["properties"]["tags"]["items"] == [{"type": "string"}, {"type": "integer"}]
        assert schema["properties"]["tags"]["additionalItems"] is False
        assert "prefixItems" not in schema["properties"]["tags"]
        assert list(doc["components"]["schemas"]).count("Address") == 1

    def test_the_headers_are_the_version_and_fleets_own(self, doc: dict[str, Any]) -> None:
        """The version header is the contract's (required past 1), beside causation-id,
        timestamp_in_ms and the trace context."""
        v1 = doc["components"]["messages"]["SignedUp.v1"]["headers"]
        v2 = doc["components"]["messages"]["SignedUp.v2"]["headers"]
        assert v1["properties"]["version"]["const"] == 1
        assert "required" not in v1
        assert v2["properties"]["version"]["const"] == 2
        assert v2["required"] == ["version"]
        assert set(v2["properties"]) == {
            "version",
            "causation-id",
            "timestamp_in_ms",
            "traceparent",
            "tracestate",
        }

    def test_the_correlation_id_is_the_amqp_property(self, doc: dict[str, Any]) -> None:
        """Every message shares one correlation id: $message.header#/correlation_id, marked
        as the AMQP property."""
        message = doc["components"]["messages"]["Reminder.v1"]
        correlation = resolve(doc, message["correlationId"]["$ref"])
        assert correlation["location"] == "$message.header#/correlation_id"
        assert correlation["x-fleet-amqp-property"] == "correlation_id"

    def test_each_example_decodes_into_its_contract(self, doc: dict[str, Any]) -> None:
        """A message's example payload is one its contract accepts."""
        by_key = {"SignedUp.v1": fleet.SignedUpV1, "SignedUp.v2": fleet.SignedUp}
        for key, contract in by_key.items():
            (example,) = doc["components"]["messages"][key]["examples"]
            assert example["headers"] == {"version": contract.__version__}
            decode(contract, msgspec.json.encode(example["payload"]))

    def test_a_fault_message_names_the_message_it_is_about(self, doc: dict[str, Any]) -> None:
        """x-fleet-fault-of: the contract version a fault announces a parked message of."""
        fault = doc["components"]["messages"]["Fault.SignedUp.v2"]
        assert fault["name"] == "Fault[SignedUp]"
        assert fault["x-fleet-fault-of"] == "SignedUp.v2"
        assert fault["x-fleet-routing-key"] == "fault.customer.signed_up"
