"""`fleet contracts lock` and `diff` in a project, as its CI runs them: a breaking change
to a locked version fails naming the field; the same change as a new version with an
upcaster passes; `--against` reads the lock at a git ref."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
V2 = '''

class CustomerSignedUpV2(Event, frozen=True, kw_only=True):
    """A customer made an account, with the channel it came through."""

    __wire_name__ = "CustomerSignedUp"
    __version__ = 2
    __routing_key__ = "customer.signed_up"

    customer_id: Identifier
    email: Text
    channel: Identifier


@upcaster
def signed_up_v2(old: CustomerSignedUp) -> CustomerSignedUpV2:
    return CustomerSignedUpV2(customer_id=old.customer_id, email=old.email, channel="web")
'''


def run(project: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "PYTHON"))}
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(command, cwd=project, capture_output=True, text=True, env=env, timeout=60)


def fleet(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(project, sys.executable, "-m", "workers.cli", *args)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A new project with its contracts locked and committed."""
    assert fleet(tmp_path, "new", "shop").returncode == 0
    shop = tmp_path / "shop"
    assert fleet(shop, "contracts", "lock").returncode == 0
    for command in (("git", "init", "-q"), ("git", "add", "."), ("git", "commit", "-qm", "x")):
        assert run(shop, *command).returncode == 0
    return shop


def contracts_file(project: Path) -> Path:
    return project / "shop" / "contracts" / "__init__.py"


class TestTheGate:
    def test_a_fresh_lock_has_no_change(self, project: Path) -> None:
        result = fleet(project, "contracts", "diff")
        assert (result.returncode, result.stdout.strip()) == (0, "No change since the lock.")

    def test_a_removed_field_fails_naming_its_path(self, project: Path) -> None:
        # Given: email removed from CustomerSignedUp v1
        source = contracts_file(project)
        source.write_text(source.read_text().replace("    email: Text\n", "", 1))
        # When
        result = fleet(project, "contracts", "diff")
        # Then
        assert result.returncode == 1
        assert "breaking    CustomerSignedUp v1 $.email: the field was removed" in result.stdout
        assert result.stdout.strip().endswith("1 change(s), 1 breaking.")

    def test_the_same_change_as_a_new_version_with_an_upcaster_passes(self, project: Path) -> None:
        # Given: a required field added, as v2 with an upcaster from v1
        source = contracts_file(project)
        text = source.read_text().replace(
            "from contracts import Event, Identifier, Text",
            "from contracts import Event, Identifier, Text, upcaster",
        )
        source.write_text(text + V2)
        # When
        result = fleet(project, "contracts", "diff")
        # Then
        assert result.returncode == 0, result.stdout + result.stderr
        assert "compatible  CustomerSignedUp v2: a new version, upcast from v1" in result.stdout

    def test_a_new_version_without_an_upcaster_fails(self, project: Path) -> None:
        source = contracts_file(project)
        text = source.read_text().replace(
            "from contracts import Event, Identifier, Text",
            "from contracts import Event, Identifier, Text, upcaster",
        )
        source.write_text(text + V2.split("@upcaster")[0])
        result = fleet(project, "contracts", "diff")
        assert result.returncode == 1
        assert "no upcaster from v1" in result.stdout

    def test_against_a_git_ref_reads_the_lock_committed_there(self, project: Path) -> None:
        # Given: a relock after a breaking change, committed
        source = contracts_file(project)
        source.write_text(source.read_text().replace("    email: Text\n", "", 1))
        assert fleet(project, "contracts", "lock").returncode == 0
        # When: against the working lock, nothing; against HEAD, the removal
        here = fleet(project, "contracts", "diff")
        before = fleet(project, "contracts", "diff", "--against", "HEAD")
        # Then
        assert here.returncode == 0
        assert before.returncode == 1
        assert "$.email: the field was removed" in before.stdout

    def test_a_missing_lock_or_an_unknown_ref_is_one_line(self, tmp_path: Path) -> None:
        assert fleet(tmp_path, "new", "bare").returncode == 0
        bare = tmp_path / "bare"
        (bare / "contracts.lock.json").unlink()  # fleet new locks; say it was never done
        missing = fleet(bare, "contracts", "diff")
        unknown = fleet(bare, "contracts", "diff", "--against", "no-such-ref")
        assert missing.returncode == 2
        assert missing.stderr.startswith("error: no lock at ")
        assert "fleet contracts lock" in missing.stderr
        assert unknown.returncode == 2
        assert unknown.stderr.startswith("error: cannot read contracts.lock.json at git ref")
