"""fleet's pytest plugin: end-to-end tests of a team's own workers, with no conftest.

Installed with fleet and loaded by pytest through the ``pytest11`` entry point
``fleet`` (``-p no:fleet`` turns it off). A test asks for `fleet_broker` and gets a
fresh vhost of the test broker with the project's topology applied:

    async def test_an_order_is_answered_with_stock_reserved(fleet_broker: FleetBroker) -> None:
        async with fleet_broker.running("inventory"), fleet_broker.tap("stock") as stock:
            await fleet_broker.publish(OrderPlaced(order_id="o-1", sku="apple", qty=1))
            assert (await stock.next(StockReserved)).order_id == "o-1"

Fixtures (each named ``fleet_…``: fleet's own suite has ``broker``, ``database`` and
``fleet``, and a project's conftest may too; a conftest's fixture of the same name
wins over a plugin's, so a team overrides any of these by defining it):

    fleet_broker          FleetBroker: the test's vhost, its topology, workers, publish, waits
    fleet_topology_file   the topology file (override it to test with another)
    fleet_database        a fresh PostgreSQL database for the test (its URL)
    fleet_rabbitmq        the test broker itself, once reachable (session)

Configuration, read once:

    FLEET_TEST_AMQP_URL          broker, default amqp://guest:guest@127.0.0.1:5672/
    FLEET_TEST_MANAGEMENT_URL    its management API, default http://guest:guest@127.0.0.1:15672
    FLEET_TEST_DATABASE_URL      PostgreSQL server, default postgresql://postgres@127.0.0.1:5432
    the topology file            ini ``fleet_topology`` (relative to the ini file), else
                                 FLEET_TOPOLOGY, else ``fleet.yaml`` in the rootdir

When the topology file exists, the rootdir goes on ``sys.path`` (as ``fleet worker
run`` puts its working directory there), so the project's worker and contract
modules import without a conftest or PYTHONPATH. A selected test that needs
RabbitMQ or PostgreSQL while it is down stops the run with one line saying how to
start it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from topology import TopologyInvalid, load
from topology.apply import apply
from workers.pytest_plugin.harness import FleetBroker, exchange_for, tap_bindings

__all__ = ["FleetBroker", "RabbitMQ", "exchange_for", "tap_bindings", "topology_path"]

T = TypeVar("T")

AMQP_URL = os.environ.get("FLEET_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("FLEET_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
DATABASE_URL = os.environ.get("FLEET_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432")
TOPOLOGY_INI = "fleet_topology"
PROJECT_FILE = "fleet.yaml"

_BROKER_FIXTURES = frozenset({"fleet_broker", "fleet_rabbitmq"})
_DATABASE_FIXTURES = frozenset({"fleet_database"})
_problems = pytest.StashKey[dict[str, str | None]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        TOPOLOGY_INI,
        "fleet: the topology file of the fleet_broker fixture, relative to the ini file "
        "(default: $FLEET_TOPOLOGY, then fleet.yaml in the rootdir)",
        type="string",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    if topology_path(config).is_file():
        _on_sys_path(config.rootpath)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop before the first test if a selected one needs a service that is down."""
    needed: set[str] = set()
    for item in session.items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _BROKER_FIXTURES:
            needed.add("rabbitmq")
        if names & _DATABASE_FIXTURES:
            needed.add("postgresql")
    for service in sorted(needed):
        problem = _problem(session.config, service)
        if problem is not None:
            raise pytest.UsageError(problem)


def topology_path(config: pytest.Config) -> Path:
    """The tests' topology file: the ini's `fleet_topology`, else FLEET_TOPOLOGY, else
    ``fleet.yaml`` in the rootdir (which need not exist)."""
    configured = str(config.getini(TOPOLOGY_INI) or "")
    if configured:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return base / configured
    from_env = os.environ.get("FLEET_TOPOLOGY")
    if from_env:
        return Path(from_env).absolute()
    return config.rootpath / PROJECT_FILE


# -- Fixtures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RabbitMQ:
    """The test broker: the root vhost's AMQP URL and the management API's."""

    amqp_url: str
    management_url: str

    def api(self) -> httpx.Client:
        """A management API client (basic auth from the URL)."""
        parts = urlsplit(self.management_url)
        base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}{parts.path.rstrip('/')}"
        auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        return httpx.Client(base_url=base, auth=auth, timeout=10)

    def vhost_url(self, vhost: str) -> str:
        """The AMQP URL of `vhost` (TLS options in the query kept)."""
        parts = urlsplit(self.amqp_url)
        return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))

    def user(self) -> str:
        return unquote(urlsplit(self.amqp_url).username or "guest")


@pytest.fixture(scope="session")
def fleet_rabbitmq(pytestconfig: pytest.Config) -> RabbitMQ:
    """The test broker (FLEET_TEST_AMQP_URL, FLEET_TEST_MANAGEMENT_URL); stops the run
    with one line if it is not up."""
    problem = _problem(pytestconfig, "rabbitmq")
    if problem is not None:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
    return RabbitMQ(AMQP_URL, MANAGEMENT_URL)


@pytest.fixture
def fleet_topology_file(pytestconfig: pytest.Config) -> Path:
    """The topology file `fleet_broker` applies (see the module's docstring); a conftest
    may override this fixture to test with another."""
    path = topology_path(pytestconfig)
    if not path.is_file():
        pytest.fail(
            f"fleet: no topology file at {path}: put fleet.yaml in the rootdir, or set "
            f"`{TOPOLOGY_INI}` in the pytest ini or FLEET_TOPOLOGY",
            pytrace=False,
        )
    return path


@pytest.fixture
def fleet_broker(
    fleet_rabbitmq: RabbitMQ, fleet_topology_file: Path, request: pytest.FixtureRequest
) -> Iterator[FleetBroker]:
    """A fresh vhost with the project's topology applied, deleted after the test; see
    `FleetBroker` for its workers, publishing and waits."""
    try:
        topology = load(fleet_topology_file)
    except TopologyInvalid as exc:
        pytest.fail(str(exc), pytrace=False)
    root = request.config.rootpath
    _on_sys_path(root)
    vhost = f"test-{_slug(request.node.name, 50, '-')}-{uuid.uuid4().hex[:6]}"
    with fleet_rabbitmq.api() as api:
        api.put(f"/api/vhosts/{quote(vhost, safe='')}").raise_for_status()
        api.put(
            f"/api/permissions/{quote(vhost, safe='')}/{quote(fleet_rabbitmq.user(), safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    harness = FleetBroker(
        vhost=vhost,
        amqp_url=fleet_rabbitmq.vhost_url(vhost),
        management_url=fleet_rabbitmq.management_url,
        topology=topology,
        topology_file=fleet_topology_file,
        project_root=root,
        request=request,
    )
    try:
        _blocking(apply(topology, harness.amqp_url, management_url=fleet_rabbitmq.management_url))
        yield harness
    finally:
        harness.close()
        with fleet_rabbitmq.api() as api:
            api.delete(f"/api/vhosts/{quote(vhost, safe='')}")


@pytest.fixture
def fleet_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database on FLEET_TEST_DATABASE_URL's server (its URL), dropped
    after the test; stops the run with one line if PostgreSQL is not up."""
    problem = _problem(request.config, "postgresql")
    if problem is not None:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
    name = f"test_{_slug(request.node.name, 40, '_')}_{uuid.uuid4().hex[:6]}"
    _blocking(_admin(f'CREATE DATABASE "{name}"'))
    yield f"{DATABASE_URL.rstrip('/')}/{name}"
    _blocking(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(f"{DATABASE_URL.rstrip('/')}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


# -- Helpers --------------------------------------------------------------------------------


def _problem(config: pytest.Config, service: str) -> str | None:
    """Why `service` cannot be used, in one line (None if it can); checked once a session."""
    known = config.stash.setdefault(_problems, {})
    if service not in known:
        known[service] = _rabbitmq_problem() if service == "rabbitmq" else _postgresql_problem()
    return known[service]


def _rabbitmq_problem() -> str | None:
    if not _reachable(AMQP_URL, 5672):
        return (
            f"RabbitMQ is not reachable at {_shown(AMQP_URL)}: start it with "
            "`rabbitmq-server -detached` (or point FLEET_TEST_AMQP_URL at one)"
        )
    if not _reachable(MANAGEMENT_URL, 15672):
        return (
            f"the RabbitMQ management API is not reachable at {_shown(MANAGEMENT_URL)}: "
            "run `rabbitmq-plugins enable rabbitmq_management` (or set FLEET_TEST_MANAGEMENT_URL)"
        )
    return None


def _postgresql_problem() -> str | None:
    if _reachable(DATABASE_URL, 5432):
        return None
    return (
        f"PostgreSQL is not reachable at {_shown(DATABASE_URL)}: start it "
        "(or point FLEET_TEST_DATABASE_URL at one)"
    )


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _shown(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _slug(name: str, limit: int, separator: str) -> str:
    return re.sub(r"[^a-z0-9]+", separator, name.lower()).strip(separator)[:limit]


def _on_sys_path(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on an event loop of its own in a thread: callable from a sync
    fixture and from inside a running loop (a test's `database()`) alike."""
    with ThreadPoolExecutor(1, thread_name_prefix="fleet-testing") as pool:
        return pool.submit(asyncio.run, coroutine).result()
