"""Shared fixtures: a reachable broker, and a fresh vhost per test.

Every integration test gets its own vhost (named after the test), so tests
never see each other's queues; the vhost is deleted afterwards, whatever the
test left in it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx
import pytest

BROKER_URL = os.environ.get("FLEET_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("FLEET_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")


@dataclass(frozen=True)
class Broker:
    """A vhost of the test broker: its AMQP URL and its management API."""

    vhost: str
    amqp_url: str
    management_url: str

    def api(self) -> httpx.Client:
        """A management API client (basic auth from the URL)."""
        parts = urlsplit(self.management_url)
        base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
        return httpx.Client(
            base_url=base, auth=(parts.username or "guest", parts.password or "guest"), timeout=10
        )

    def queue(self, name: str) -> dict[str, object]:
        """The management API's view of one queue of this vhost."""
        with self.api() as api:
            response = api.get(f"/api/queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}")
            response.raise_for_status()
            data: dict[str, object] = response.json()
            return data


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


DATABASE_URL = os.environ.get("FLEET_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for this test (its URL), dropped afterwards."""
    asyncpg = pytest.importorskip("asyncpg")
    if not _reachable(DATABASE_URL.replace("postgresql", "tcp"), 5432):
        pytest.skip(f"PostgreSQL is not reachable at {DATABASE_URL}")
    name = (
        "test_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + uuid.uuid4().hex[:6]
    )

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(f"{DATABASE_URL}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{DATABASE_URL}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def broker_root() -> Broker:
    """The broker itself; stops the run with one line if it is not up."""
    if not _reachable(BROKER_URL, 5672):
        raise pytest.UsageError(
            f"RabbitMQ is not reachable at {BROKER_URL}: start it with `rabbitmq-server -detached`"
        )
    if not _reachable(MANAGEMENT_URL, 15672):
        raise pytest.UsageError(
            "the RabbitMQ management API is not reachable: "
            "run `rabbitmq-plugins enable rabbitmq_management`"
        )
    return Broker(vhost="/", amqp_url=BROKER_URL, management_url=MANAGEMENT_URL)


@pytest.fixture
def broker(broker_root: Broker, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A fresh vhost for this test, deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    vhost = f"test-{slug}-{uuid.uuid4().hex[:6]}"
    with broker_root.api() as api:
        api.put(f"/api/vhosts/{quote(vhost, safe='')}").raise_for_status()
        api.put(
            f"/api/permissions/{quote(vhost, safe='')}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    base = BROKER_URL.rstrip("/")
    yield Broker(
        vhost=vhost, amqp_url=f"{base}/{quote(vhost, safe='')}", management_url=MANAGEMENT_URL
    )
    with broker_root.api() as api:
        api.delete(f"/api/vhosts/{quote(vhost, safe='')}")
