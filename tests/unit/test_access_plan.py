"""Planning broker users: missing users, permissions that differ, extra permissions and
passwords, and where the passwords come from. No broker."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from topology import Permissions, Resources, TopicPermission, TopologyInvalid, UserDecl
from topology.passwords import (
    collect_passwords,
    password_matches,
    read_passwords_file,
    with_password,
)
from topology.plan import NO_CHANGES, PASSWORD_DIFFERS, REVOKED, plan


def orders_user(**overrides: Any) -> UserDecl:
    """fleet-orders as the file wants it, with some fields replaced."""
    fields: dict[str, Any] = {
        "name": "fleet-orders",
        "process": "worker orders",
        "permissions": Permissions(write=r"^(orders|orders\.failures)$", read="^orders$"),
        "topics": [TopicPermission(exchange="orders", write=r"^order\.confirmed$")],
    }
    return UserDecl(**{**fields, **overrides})


def on_broker(user: UserDecl, password: str = "s3cret", **overrides: Any) -> UserDecl:
    """The user as the management API reports it: no process, a salted SHA-256 hash."""
    salt = b"\x01\x02\x03\x04"
    digest = hashlib.sha256(salt + password.encode()).digest()
    fields: dict[str, Any] = {
        "name": user.name,
        "tags": user.tags,
        "permissions": user.permissions,
        "topics": user.topics,
        "password_hash": base64.b64encode(salt + digest).decode(),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
    }
    return UserDecl(**{**fields, **overrides})


def users(*items: UserDecl) -> Resources:
    return Resources(users=list(items))


class TestUserDrift:
    """plan() sorts every difference of a user into create, change, drift or remove."""

    def test_a_missing_user_is_created_with_its_process_shown(self) -> None:
        """Never applied, absent on the broker: a create, titled with whose user it is."""
        # Given
        desired = users(orders_user())
        # When
        result = plan(desired, Resources(), None, {"fleet-orders": "s3cret"})
        # Then
        [change] = result.changes
        assert (change.kind, change.title, change.differences) == (
            "create",
            "+ user fleet-orders (worker orders)",
            [],
        )

    def test_a_user_to_create_without_a_password_says_where_to_put_one(self) -> None:
        """The note names the variable apply would read."""
        # Given
        desired = users(orders_user())
        # When
        [change] = plan(desired, Resources(), None, {}).changes
        # Then
        assert change.differences == [
            "no password: set FLEET_PASSWORD_FLEET_ORDERS or list it in --passwords-file"
        ]

    def test_a_user_that_matches_gives_an_empty_plan(self) -> None:
        """Same tags, permissions, topic permissions and password: nothing to do."""
        # Given
        desired = users(orders_user())
        live = users(on_broker(orders_user()))
        # When
        result = plan(desired, live, desired, {"fleet-orders": "s3cret"})
        # Then
        assert result.render() == NO_CHANGES

    def test_permissions_widened_by_hand_are_drift_with_each_field_shown(self) -> None:
        """Applied, then changed on the broker: drift, broker value → file value."""
        # Given
        desired = users(orders_user())
        widened = Permissions(configure=".*", write=".*", read="^orders$")
        live = users(on_broker(orders_user(), permissions=widened))
        # When
        [change] = plan(desired, live, desired).changes
        # Then
        assert change.kind == "drift"
        assert change.differences == [
            "configure: .* → ''",
            r"write: .* → ^(orders|orders\.failures)$",
        ]

    def test_an_extra_topic_permission_is_shown_for_removal(self) -> None:
        """A topic permission the file does not give is extra, and apply removes it."""
        # Given
        desired = users(orders_user())
        extra = TopicPermission(exchange="payments", write=".*", read=".*")
        live = users(on_broker(orders_user(), topics=[*orders_user().topics, extra]))
        # When
        [change] = plan(desired, live, desired).changes
        # Then
        assert change.differences == [
            "topic permission on exchange payments: write .*, read .* → (none)"
        ]

    def test_a_missing_topic_permission_would_leave_every_routing_key_open(self) -> None:
        """Without one, RabbitMQ allows any key: plan shows it as missing."""
        # Given
        desired = users(orders_user())
        live = users(on_broker(orders_user(), topics=[]))
        # When
        [change] = plan(desired, live, None).changes
        # Then
        assert change.kind == "change"
        assert change.differences == [
            r"topic permission on exchange orders: (none) → write ^order\.confirmed$, read ''"
        ]

    def test_a_user_without_permissions_on_the_vhost_gets_them_all_shown(self) -> None:
        """The user exists (another vhost's fleet made it) but may do nothing here."""
        # Given
        desired = users(orders_user())
        live = users(on_broker(orders_user(), permissions=None, topics=[]))
        # When
        [change] = plan(desired, live, None).changes
        # Then
        assert change.differences[0] == (
            r"permissions: (none) → configure '', write ^(orders|orders\.failures)$, "
            "read ^orders$"
        )

    def test_different_tags_are_a_change(self) -> None:
        """An administrator tag on a worker's user is far from least privilege."""
        # Given
        desired = users(orders_user())
        live = users(on_broker(orders_user(), tags=["administrator"]))
        # When
        [change] = plan(desired, live, None).changes
        # Then
        assert change.differences == ["tags: administrator → (none)"]

    def test_a_password_that_is_not_the_given_one_is_a_change(self) -> None:
        """Checked against the broker's salted hash, nothing sent to the broker."""
        # Given
        desired = users(orders_user())
        live = users(on_broker(orders_user(), password="old"))
        # When
        [change] = plan(desired, live, desired, {"fleet-orders": "new"}).changes
        # Then
        assert (change.kind, change.differences) == ("change", [PASSWORD_DIFFERS])

    def test_an_unknown_password_is_not_checked(self) -> None:
        """Without the password plan cannot tell, and says nothing."""
        # Given
        desired = users(orders_user())
        live = users(on_broker(orders_user(), password="whatever"))
        # When
        result = plan(desired, live, desired, {})
        # Then
        assert result.changes == []

    def test_a_user_deleted_by_hand_is_drift(self) -> None:
        """Applied once, now absent: drift, like a queue deleted by hand."""
        # Given
        desired = users(orders_user())
        # When
        [change] = plan(desired, Resources(), desired, {"fleet-orders": "x"}).changes
        # Then
        assert change.kind == "drift"

    def test_a_user_the_file_dropped_has_its_permissions_revoked(self) -> None:
        """A worker removed from the file: its user loses its rights on this vhost."""
        # Given
        gone = orders_user()
        live = users(on_broker(gone))
        # When
        [change] = plan(Resources(), live, users(gone)).changes
        # Then
        assert (change.kind, change.title, change.differences) == (
            "remove",
            "- user fleet-orders (worker orders)",
            [REVOKED],
        )

    def test_a_dropped_user_with_nothing_left_on_the_vhost_is_not_shown(self) -> None:
        """Already revoked (or never granted here): nothing to do."""
        # Given
        gone = orders_user()
        live = users(on_broker(gone, permissions=None, topics=[]))
        # When
        result = plan(Resources(), live, users(gone))
        # Then
        assert result.changes == []


class TestPasswordHashes:
    """RabbitMQ's stored hash: 4 bytes of salt, then the digest of salt + password."""

    @pytest.mark.parametrize(
        ("algorithm", "hashing"),
        [
            ("rabbit_password_hashing_sha256", hashlib.sha256),
            ("rabbit_password_hashing_sha512", hashlib.sha512),
            ("rabbit_password_hashing_md5", hashlib.md5),
        ],
    )
    def test_the_right_password_matches_and_another_does_not(
        self, algorithm: str, hashing: Any
    ) -> None:
        """Each of RabbitMQ's hashing modules."""
        # Given
        salt = b"salt"
        stored = base64.b64encode(salt + hashing(salt + b"right").digest()).decode()
        # When / Then
        assert password_matches("right", stored, algorithm) is True
        assert password_matches("wrong", stored, algorithm) is False

    def test_a_user_without_a_password_or_an_unknown_module_cannot_be_told(self) -> None:
        """None: neither a match nor a mismatch."""
        # Given / When / Then
        assert password_matches("x", "", "rabbit_password_hashing_sha256") is None
        assert password_matches("x", "AAAAAAAA", "rabbit_password_hashing_bcrypt") is None


class TestPasswordSources:
    """Passwords come from a file or the environment, never from the topology file."""

    def test_the_file_holds_one_user_and_password_a_line(self, tmp_path: Path) -> None:
        """A password is everything after the first colon; comments and blanks are skipped."""
        # Given
        path = tmp_path / "passwords"
        path.write_text("# fleet users\nfleet-orders:a:b c\n\nfleet-ingress:x\n")
        # When / Then
        assert read_passwords_file(path) == {"fleet-orders": "a:b c", "fleet-ingress": "x"}

    def test_a_malformed_file_lists_every_bad_line(self, tmp_path: Path) -> None:
        """Without the password itself: it would end up in a terminal or a CI log."""
        # Given
        path = tmp_path / "passwords"
        path.write_text("fleet-orders\nfleet-ingress:\nfleet-x:1\nfleet-x:2\n")
        # When
        with pytest.raises(TopologyInvalid) as refused:
            read_passwords_file(path)
        # Then
        assert [str(p) for p in refused.value.problems] == [
            "line 1: expected user:password",
            "line 2: expected user:password",
            "line 4: user 'fleet-x' is listed twice",
        ]

    def test_the_file_wins_over_the_environment(self) -> None:
        """FLEET_PASSWORD_<USER> fills in for users the file does not list."""
        # Given
        environ = {
            "FLEET_PASSWORD_FLEET_ORDERS": "from-env",
            "FLEET_PASSWORD_FLEET_INGRESS": "env-ingress",
        }
        # When
        found = collect_passwords(
            ["fleet-orders", "fleet-ingress", "fleet-webhooks"],
            environ,
            {"fleet-orders": "from-file"},
        )
        # Then
        assert found == {"fleet-orders": "from-file", "fleet-ingress": "env-ingress"}

    def test_a_file_naming_a_user_the_topology_lacks_is_refused(self) -> None:
        """A typo would otherwise leave the intended user without its password."""
        # When
        with pytest.raises(TopologyInvalid) as refused:
            collect_passwords(["fleet-orders"], {}, {"fleet-order": "x"}, source="pw.txt")
        # Then
        assert str(refused.value) == (
            "pw.txt: 1 problem\n"
            "  fleet-order: no such user in this topology (its users: fleet-orders)"
        )


class TestConnectingAsTheUser:
    """A process's URL names its user; the password comes from the same variable."""

    def test_the_password_is_taken_from_the_environment_and_quoted(self) -> None:
        """Any character works: fleet percent-encodes it."""
        # Given
        environ = {"FLEET_PASSWORD_FLEET_ORDERS": "p@ss/w:rd"}
        # When
        url = with_password("amqps://fleet-orders@rabbit:5671/shop?cafile=/ca.pem", environ)
        # Then
        assert url == "amqps://fleet-orders:p%40ss%2Fw%3Ard@rabbit:5671/shop?cafile=/ca.pem"

    def test_a_url_with_a_password_is_left_alone(self) -> None:
        """The operator's own credentials win."""
        # Given / When / Then
        assert with_password("amqp://u:p@h/", {"FLEET_PASSWORD_U": "x"}) == "amqp://u:p@h/"

    def test_a_user_without_any_password_is_refused_with_the_variable_to_set(self) -> None:
        """Rather than a login the broker refuses later."""
        # When
        with pytest.raises(ValueError, match="without a password") as refused:
            with_password("amqp://fleet-orders@h/", {})
        # Then
        assert str(refused.value) == (
            "the URL names user 'fleet-orders' without a password, and "
            "FLEET_PASSWORD_FLEET_ORDERS is not set (set it, or write the password in the URL)"
        )
