"""The users' part of a plan, carried out through the management API (`apply`).

Each step reads the user again and changes only what differs, in an order
that never leaves it more than its old or its new rights: the user and its
password first, then its topic permissions, then its permissions on the vhost,
and only then the topic permissions it should no longer have. A user with no
topic permission on an exchange may publish any routing key there, so a new
user gets its topic permissions before it may write anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from topology.errors import MissingPassword
from topology.live import read_users
from topology.management import Management
from topology.passwords import password_matches
from topology.plan import Change, no_password
from topology.resources import UserDecl


def carry_out_user(management: Management, change: Change, passwords: Mapping[str, str]) -> None:
    """Make one user as `change` says: grant it what it should have, or (`remove`)
    revoke what it has on the vhost.

    Raises:
        MissingPassword: the user does not exist and `passwords` has none for it.
        BrokerUnreachable: the management API cannot be reached or refuses the operator.
    """
    want = change.resource
    assert isinstance(want, UserDecl), change
    have = _current(management, want.name)
    if change.kind == "remove":
        if have is not None:
            _revoke(management, have)
        return
    password = passwords.get(want.name)
    if have is None and password is None:
        raise MissingPassword(f"user {want.name!r}: {no_password(want.name)}")
    if (
        have is None
        or sorted(have.tags) != sorted(want.tags)
        or (
            password is not None
            and password_matches(password, have.password_hash, have.hashing_algorithm) is False
        )
    ):
        management.put_user(
            want.name,
            tags=want.tags,
            password=password,
            # Without a password or a hash, RabbitMQ would clear the password.
            password_hash=have.password_hash if have is not None else None,
            hashing_algorithm=have.hashing_algorithm if have is not None else None,
        )
    had = {t.exchange: t for t in have.topics} if have is not None else {}
    for topic in want.topics:
        if had.get(topic.exchange) != topic:
            management.put_topic_permission(
                want.name, exchange=topic.exchange, write=topic.write, read=topic.read
            )
    permissions = want.permissions
    if permissions is not None and (have is None or have.permissions != permissions):
        management.put_permissions(
            want.name,
            configure=permissions.configure,
            write=permissions.write,
            read=permissions.read,
        )
    for exchange in sorted(had.keys() - {t.exchange for t in want.topics}):
        management.delete_topic_permission(want.name, exchange)


def _revoke(management: Management, have: UserDecl) -> None:
    """Take away the user's permissions on the vhost, then its topic permissions."""
    management.delete_permissions(have.name)
    for topic in have.topics:
        management.delete_topic_permission(have.name, topic.exchange)


def _current(management: Management, name: str) -> UserDecl | None:
    found = read_users(management, [name])
    return found[0] if found else None
