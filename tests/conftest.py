"""Shared fixtures: a reachable broker, and a fresh vhost per test.

Every integration test gets its own vhost (named after the test), so tests
never see each other's queues; the vhost is deleted afterwards, whatever the
test left in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

from workers.testing import RABBITMQCTL_VARIABLE, rabbitmqctl_command

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

    @property
    def management_base(self) -> str:
        """The management API's URL without credentials: a client given it borrows the
        AMQP URL's (as `--management-url` does)."""
        parts = urlsplit(self.management_url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def amqp_url_on_port(self, port: int) -> str:
        """This vhost's AMQP URL on another port (one nothing listens on, say)."""
        parts = urlsplit(self.amqp_url)
        host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
        return urlunsplit(parts._replace(netloc=f"{host}:{port}"))

    def queue(self, name: str) -> dict[str, object]:
        """The management API's view of one queue of this vhost."""
        with self.api() as api:
            response = api.get(f"/api/queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}")
            response.raise_for_status()
            data: dict[str, object] = response.json()
            return data


def pytest_sessionstart(session: pytest.Session) -> None:
    """Import every module of fleet's packages before any test runs.

    pytest rewrites (parses and compiles) the modules of the distribution that
    registers its plugin, here all of fleet's, when they are first imported.
    CPython 3.11.7 can then fail with "SystemError: AST constructor recursion
    depth mismatch" if an earlier test in the process hit a RecursionError on
    purpose (the hostile-input tests feed deeply nested JSON), so a module first
    imported lazily by a later test (a page of the console, say) broke that
    test at random. Importing them all up front (about 1.5 s) does the
    compiling while the process is clean.
    """
    import importlib
    import pkgutil

    for name in ("workers", "contracts", "topology"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.endswith("__main__"):  # that one runs the CLI
                importlib.import_module(module.name)


def pytest_report_header() -> str:
    """Which broker the run talks to (CI runs part of the suite a second time, on 4.0)."""
    shown = re.sub(r"//[^@/]*@", "//", BROKER_URL)
    ctl = " ".join(rabbitmqctl_command())
    return f"broker: {shown}, management {re.sub(r'//[^@/]*@', '//', MANAGEMENT_URL)}, {ctl}"


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


@pytest.fixture(scope="session")
def broker_version(broker_root: Broker) -> tuple[int, ...]:
    """The test broker's RabbitMQ version, ``(4, 0, 5)``, for tests of what differs."""
    with broker_root.api() as api:
        response = api.get("/api/overview")
        response.raise_for_status()
        version = str(response.json()["rabbitmq_version"])
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@pytest.fixture(scope="session")
def broker_ctl(broker_root: Broker) -> list[str]:
    """The rabbitmqctl of the node behind FLEET_TEST_AMQP_URL (FLEET_TEST_RABBITMQCTL).

    Checked once: the node it reaches must listen on the test broker's AMQP port, so
    that a test's `stop_app` never stops another node (the machine's own, say).
    """
    command = rabbitmqctl_command()
    try:
        status = subprocess.run(
            [*command, "status", "--formatter", "json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    except OSError as exc:
        pytest.fail(f"cannot run {' '.join(command)} ({exc}): set {RABBITMQCTL_VARIABLE}")
    if status.returncode != 0:
        pytest.fail(f"{' '.join(command)} status failed: {status.stderr.strip()[:300]}")
    listeners = json.loads(status.stdout)["listeners"]
    ports = sorted({int(x["port"]) for x in listeners if str(x["protocol"]).startswith("amqp")})
    port = urlsplit(BROKER_URL).port or 5672
    if port not in ports:
        pytest.fail(
            f"{' '.join(command)} reaches the node listening on {ports}, not the test broker "
            f"on port {port}: set {RABBITMQCTL_VARIABLE} (for the 4.0 node: scripts/rabbit4 ctl)"
        )
    return command


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
