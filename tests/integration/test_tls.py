"""TLS to the broker: a real worker over amqps:// with a CA and a client certificate,
processing a message end to end, and the one-line refusals of a wrong CA and a
missing client certificate.

The broker is a TLS-only RabbitMQ 4.0 node (`scripts/rabbit4 tls`, in the
debootstrap root beside the machine's own node, which is never touched) that
requires client certificates. The fixture makes a CA, the node's and a client's
certificates and a second, unrelated CA with openssl, starts the node with them
(building the root first if it is missing, about a minute), and stops it and
deletes its data afterwards, whatever the tests did. A second test session
waits for the first to finish with the node.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import structlog
from click.testing import CliRunner, Result
from fulfilment import TOPOLOGY_FILE

from tests.integration.conftest import ECHO_TOPOLOGY, ROOT, order
from workers.cli import EXIT_FAILURE, EXIT_OK, _register_commands, cli
from workers.testing import WorkerProcess, collect

#: The reference fleet's topology: its contracts are what `fleet publish` knows.
REFERENCE = ("--file", str(TOPOLOGY_FILE))

SCRIPT = ROOT / "scripts" / "rabbit4"
RABBIT4_ROOT = Path(os.environ.get("FLEET_RABBIT4_ROOT", "/var/lib/fleet/rabbit4"))
AMQPS_PORT = 5674
MANAGEMENT_PORT = 15674
#: A user of the test's own, whose password must never show up in a log line.
USER, PASSWORD = "tls-user", f"tls-secret-{uuid.uuid4().hex[:8]}"


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """ca.pem signs server.pem (localhost, 127.0.0.1) and client.pem; wrong-ca.pem
    signs nothing here."""
    for ca in ("ca", "wrong-ca"):
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=fleet test {ca}", "-keyout", folder / f"{ca}.key",
            "-out", folder / f"{ca}.pem",
        )  # fmt: skip
    extensions = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for name, extension in extensions.items():
        (folder / f"{name}.ext").write_text(extension)
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=fleet test {name}",
            "-keyout", folder / f"{name}.key", "-out", folder / f"{name}.csr",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / "ca.pem",
            "-CAkey", folder / "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", folder / f"{name}.ext", "-out", folder / f"{name}.pem",
        )  # fmt: skip


@dataclass(frozen=True)
class TlsBroker:
    """The TLS node and the certificates it was started with."""

    certs: Path

    def amqp_url(
        self, vhost: str, *, ca: str = "ca.pem", client: bool = True, user: str = USER
    ) -> str:
        """amqps://… with the CA file, and the client certificate unless told not to."""
        query = f"cafile={self.certs / ca}"
        if client:
            query += f"&certfile={self.certs / 'client.pem'}&keyfile={self.certs / 'client.key'}"
        credentials = f"{user}:{PASSWORD}" if user == USER else "guest:guest"
        return f"amqps://{credentials}@127.0.0.1:{AMQPS_PORT}/{quote(vhost, safe='')}?{query}"

    @property
    def management_url(self) -> str:
        """https, without TLS files: fleet uses the AMQP URL's CA for it."""
        return f"https://127.0.0.1:{MANAGEMENT_PORT}"

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.management_url,
            auth=("guest", "guest"),
            verify=ssl.create_default_context(cafile=str(self.certs / "ca.pem")),
            timeout=10,
        )


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """The TLS node, started for this module and stopped after it."""
    if os.geteuid() != 0:
        pytest.skip("the RabbitMQ 4.0 node runs under chroot: run the tests as root")
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    RABBIT4_ROOT.parent.mkdir(parents=True, exist_ok=True)
    with open(RABBIT4_ROOT.parent / "rabbit4-tls.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session's tests may be using the node
        try:
            started = subprocess.run(
                [SCRIPT, "tls", "start", certs, "--require-client-cert"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if started.returncode != 0:
                pytest.fail(f"scripts/rabbit4 tls start failed:\n{started.stderr}")
            broker = TlsBroker(certs)
            with broker.api() as api:
                api.put(
                    f"/api/users/{USER}", json={"password": PASSWORD, "tags": "administrator"}
                ).raise_for_status()
            yield broker
        finally:
            subprocess.run([SCRIPT, "tls", "stop"], capture_output=True, timeout=120)


@pytest.fixture
def vhost(tls_broker: TlsBroker, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh vhost on the TLS node for this test, the test user allowed everything."""
    name = f"tls-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    with tls_broker.api() as api:
        api.put(f"/api/vhosts/{quote(name, safe='')}").raise_for_status()
        for user in (USER, "guest"):
            api.put(
                f"/api/permissions/{quote(name, safe='')}/{user}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
    yield name
    with tls_broker.api() as api:
        api.delete(f"/api/vhosts/{quote(name, safe='')}")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def fleet(*args: str) -> Result:
    """`fleet ARGS...` in process (in a thread from an async test: it runs its own loop)."""
    _register_commands()
    return CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="fleet")


def echo_file(tmp_path: Path) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(ECHO_TOPOLOGY.format(queue_type="quorum", prefetch=8, concurrency=2))
    return path


class TestOverTls:
    """Every process talks amqps:// (and https to the management API) with the CA file."""

    async def test_a_worker_over_tls_processes_a_message_end_to_end(
        self, tls_broker: TlsBroker, vhost: str, tmp_path: Path
    ) -> None:
        """apply, publish, status and dlq over TLS; the worker answers; no password in logs."""
        # Given the topology applied over amqps:// and https
        path = echo_file(tmp_path)
        url = tls_broker.amqp_url(vhost)
        on = ["--file", str(path), "--url", url, "--management-url", tls_broker.management_url]
        applied = await asyncio.to_thread(fleet, "topology", "apply", *on)
        assert applied.exit_code == EXIT_OK, applied.output
        # When a worker runs over TLS and an order is published over TLS
        with WorkerProcess("echo", topology_file=path, url=url, pythonpath=[ROOT]) as worker:
            published = await asyncio.to_thread(
                fleet, "publish", "orders", "order.placed", "--type", "OrderPlaced", *REFERENCE,
                "--json", json.dumps(order("o-tls")), "--url", url,
            )  # fmt: skip
            assert published.exit_code == EXIT_OK, published.output
            [answer] = await collect(url, "answers", 1, seconds=20)
        status = await asyncio.to_thread(fleet, "status", *on)
        parked = await asyncio.to_thread(
            fleet, "dlq", "list", "--url", url, "--management-url", tls_broker.management_url
        )
        planned = await asyncio.to_thread(fleet, "topology", "plan", *on)
        # Then
        assert answer.json()["order_id"] == "o-tls"
        [consuming] = worker.events("worker.consuming")
        assert consuming["node"] == f"127.0.0.1:{AMQPS_PORT}"
        assert status.exit_code == EXIT_OK, status.output
        assert parked.exit_code == EXIT_OK, parked.output
        assert planned.exit_code == EXIT_OK, planned.output
        everything = "\n".join([*worker.output, applied.output, published.output, status.output])
        assert PASSWORD not in everything


class TestRefusals:
    """A TLS mistake is a configuration error: one line, exit 1, no retrying."""

    def test_a_wrong_ca_is_refused_with_one_line(
        self, tls_broker: TlsBroker, vhost: str, tmp_path: Path
    ) -> None:
        """The worker stops at once, saying the CA does not vouch for the broker."""
        # Given the topology applied, and a worker that trusts another CA
        path = echo_file(tmp_path)
        good = tls_broker.amqp_url(vhost)
        on = ["--file", str(path), "--management-url", tls_broker.management_url]
        assert fleet("topology", "apply", *on, "--url", good).exit_code == EXIT_OK
        wrong = tls_broker.amqp_url(vhost, ca="wrong-ca.pem")
        worker = WorkerProcess("echo", topology_file=path, url=wrong, pythonpath=[ROOT])
        # When
        with pytest.raises(RuntimeError, match="failed TLS verification"):
            worker.start(timeout=30)
        # Then
        assert worker.stop() == EXIT_FAILURE
        errors = [line for line in worker.output if line.startswith("error:")]
        assert errors == [
            f"error: RabbitMQ at {wrong.replace(PASSWORD, '***')} failed TLS verification "
            "(certificate verify failed: self-signed certificate in certificate chain): name "
            "the CA that signed the broker's certificate in the URL's cafile=, and the host "
            "its certificate names"
        ]
        assert not any("Traceback" in line for line in worker.output)
        assert worker.events("broker.unreachable") == []  # refused, not retried

    def test_a_wrong_ca_for_the_management_api_is_one_line(
        self, tls_broker: TlsBroker, vhost: str, tmp_path: Path
    ) -> None:
        """`topology plan` over https: exit 1 and the same advice."""
        # Given
        wrong = tls_broker.amqp_url(vhost, ca="wrong-ca.pem")
        # When
        result = fleet("topology", "plan", "--file", str(echo_file(tmp_path)), "--url", wrong,
                       "--management-url", tls_broker.management_url)  # fmt: skip
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output == (
            f"error: the RabbitMQ management API at {tls_broker.management_url} failed TLS "
            "verification (certificate verify failed: self-signed certificate in certificate "
            "chain): name the CA that signed the broker's certificate in the URL's cafile=, and "
            "the host its certificate names\n"
        )

    def test_without_a_client_certificate_the_broker_refuses(
        self, tls_broker: TlsBroker, vhost: str
    ) -> None:
        """The node requires one: `fleet publish` says to add certfile= and keyfile=."""
        # Given
        url = tls_broker.amqp_url(vhost, client=False)
        # When
        result = fleet("publish", "orders", "order.placed", "--type", "OrderPlaced", *REFERENCE,
                       "--json", json.dumps(order("o-1")), "--url", url)  # fmt: skip
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output == (
            f"error: RabbitMQ at {url.replace(PASSWORD, '***')} requires a client certificate: "
            "add certfile= and keyfile= to the URL\n"
        )

    def test_a_ca_file_that_is_not_there_is_named(self, tls_broker: TlsBroker, vhost: str) -> None:
        """Before any connection is tried."""
        # Given
        url = tls_broker.amqp_url(vhost, ca="nope.pem")
        # When
        result = fleet("publish", "orders", "order.placed", "--type", "OrderPlaced", *REFERENCE,
                       "--json", json.dumps(order("o-1")), "--url", url)  # fmt: skip
        # Then
        assert result.exit_code == EXIT_FAILURE
        assert result.output == (
            f"error: cannot connect to {url.replace(PASSWORD, '***')}: the URL's cafile= names "
            f"{tls_broker.certs / 'nope.pem'}, which does not exist\n"
        )
