"""`fleet new` as a team meets it: a project made in an empty directory, installed
into a venv of its own next to fleet, its tests run, and every command driven
from inside it with no PYTHONPATH and no topology option, on the real broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Broker
from workers.testing import eventually_blocking

ROOT = Path(__file__).resolve().parents[2]
SIGN_UP = {"customer_id": "c-1", "email": "ada@example.com"}


@dataclass
class Project:
    """A project `fleet new` made, with the venv it is installed in."""

    directory: Path
    bin: Path
    env: dict[str, str]

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command of the venv (`fleet ...`, `pytest`), run in the project's directory."""
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def fleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run("fleet", *args)
        assert result.returncode == 0, f"fleet {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`fleet ARGS` in the background, its JSON logs on stderr."""
        return subprocess.Popen(
            [str(self.bin / "fleet"), "--log-format", "json", *args],
            cwd=self.directory,
            env=self.env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, wait, and the logs it wrote."""
    process.send_signal(signal.SIGTERM)
    try:
        _, logs = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, logs = process.communicate()
    assert process.returncode == 0, logs[-2000:]
    return logs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def shop(tmp_path: Path, broker: Broker) -> Iterator[Project]:
    """`fleet new shop`, installed with uv into a venv beside it; fleet's own environment
    variables cleared, the broker's URL the only thing given (the test's vhost)."""
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to make the project's venv (.ci/setup installs it)"
    made = subprocess.run(
        [str(ROOT / ".venv/bin/fleet"), "new", "shop"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    directory = tmp_path / "shop"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", str(venv)], check=True, timeout=60)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "-e", str(ROOT),
         "-e", str(directory), "pytest", "pytest-asyncio"],
        check=True,
        timeout=300,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "PYTHON"))}
    env["FLEET_AMQP_URL"] = broker.amqp_url
    env["FLEET_MANAGEMENT_URL"] = broker.management_url
    return Project(directory, venv / "bin", env)


class TestANewProject:
    def test_it_holds_what_a_team_commits(self, shop: Project) -> None:
        """pyproject, fleet.yaml, a contract module and its lock, a worker, a test, CI that
        runs the checks (the contracts gate among them), compose, a README."""
        files = sorted(
            str(p.relative_to(shop.directory)) for p in shop.directory.rglob("*") if p.is_file()
        )
        assert files == [
            ".github/workflows/ci.yml",
            ".gitignore",
            "README.md",
            "compose.yaml",
            "contracts.lock.json",
            "fleet.yaml",
            "pyproject.toml",
            "shop/__init__.py",
            "shop/contracts/__init__.py",
            "shop/workers/__init__.py",
            "shop/workers/welcome.py",
            "tests/test_welcome.py",
        ]
        assert f"fleet @ file://{ROOT}" in (shop.directory / "pyproject.toml").read_text()
        ci = (shop.directory / ".github/workflows/ci.yml").read_text()
        assert "fleet contracts diff" in ci
        assert "fleet topology check" in ci

    def test_its_own_tests_pass_alone_and_on_the_broker(self, shop: Project) -> None:
        """`pytest` in the project: the handler alone, and two end-to-end tests."""
        result = shop.run("pytest", "-q", "-p", "no:cacheprovider", timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 passed" in result.stdout

    def test_every_command_works_inside_it(self, shop: Project) -> None:
        """check, plan, apply, contracts, worker run, publish, status, dlq, ingress and up."""
        assert "agree (0 warnings)" in shop.fleet("topology", "check").stdout
        assert shop.fleet("contracts", "diff").stdout.strip() == "No change since the lock."
        assert "create" in shop.run("fleet", "topology", "plan").stdout
        shop.fleet("topology", "apply")
        listed = shop.fleet("contracts", "list").stdout
        assert "CustomerSignedUp" in listed
        assert "OrderPlaced" not in listed  # the reference fleet's contracts stay out
        schema = json.loads(shop.fleet("contracts", "schema", "CustomerSignedUp").stdout)
        assert schema["x-fleet"]["routing_key"] == "customer.signed_up"

        # A message processed, and a refused one parked with its reason.
        worker = shop.start("worker", "run", "welcome")
        try:
            shop.fleet("publish", "shop", "customer.signed_up", "--type", "CustomerSignedUp",
                       "--json", json.dumps(SIGN_UP), "--message-id", "m-ok")  # fmt: skip
            shop.fleet("publish", "shop", "customer.signed_up", "--type", "CustomerSignedUp",
                       "--json", json.dumps({**SIGN_UP, "email": "nobody"}),
                       "--message-id", "m-bad")  # fmt: skip
            eventually_blocking(
                lambda: "1" in shop.fleet("dlq", "list").stdout,
                what="the refused sign-up in welcome.dead",
            )
            parked = shop.fleet("dlq", "show", "welcome").stdout
            status = shop.run("fleet", "status")
        finally:
            logs = stop(worker)
        assert "m-bad" in parked
        assert "not an email address" in parked
        assert status.returncode == 1  # `fleet status` fails while something is parked
        assert "1 in welcome.dead: fleet dlq show welcome" in status.stdout
        events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        processed = [e for e in events if e.get("event") == "welcome.sent"]
        assert [e["customer_id"] for e in processed] == ["c-1"]

        # The ingress takes the same event over HTTP.
        port = free_port()
        ingress = shop.start("ingress", "run", "--port", str(port))
        try:
            answer = eventually_blocking(
                lambda: _post(port, {"customer_id": "c-web", "email": "web@example.com"}),
                what="the ingress answering",
            )
        finally:
            stop(ingress)
        assert answer.status_code == 202, answer.text

        # `fleet up` runs the worker (and the ingress), supervised, and stops them.
        up = shop.start("up", "--ingress-port", str(free_port()), "--metrics-port", "0")
        try:
            eventually_blocking(
                lambda: consumers(shop, "welcome") == 1, what="fleet up's worker consuming welcome"
            )
        finally:
            logs = stop(up)
        assert '"worker.consuming"' in logs


def consumers(shop: Project, queue: str) -> int:
    """The CONSUMERS column of `fleet status` for `queue`."""
    lines = shop.run("fleet", "status").stdout.splitlines()
    header = lines[0].split()
    row = next(line.split() for line in lines[1:] if line.split()[:1] == [queue])
    return int(row[header.index("CONSUMERS")])


def _post(port: int, body: dict[str, str]) -> httpx.Response | None:
    try:
        return httpx.post(f"http://127.0.0.1:{port}/signups", json=body, timeout=5)
    except httpx.TransportError:
        return None
