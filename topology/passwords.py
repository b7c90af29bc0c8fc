"""The passwords of the broker users `access.users` makes, and checking them against
the broker's hashes.

A password is never written in the topology file or in fleet's record. `apply`
takes each from the environment variable `password_variable(user)`
(FLEET_PASSWORD_FLEET_ORDERS for fleet-orders) or from a passwords file, one
``user:password`` per line (the file wins). RabbitMQ stores a salted hash,
which `plan` checks a password against without changing anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from topology.errors import TopologyInvalid
from topology.names import password_variable
from topology.problems import Problem

#: RabbitMQ's hashing modules: the salt is the hash's first 4 bytes, the digest
#: is of salt + password (UTF-8).
_ALGORITHMS = {
    "rabbit_password_hashing_sha256": "sha256",
    "rabbit_password_hashing_sha512": "sha512",
    "rabbit_password_hashing_md5": "md5",
}


def password_matches(password: str, password_hash: str, algorithm: str) -> bool | None:
    """Whether `password` is the one RabbitMQ hashed; None when that cannot be told
    (no hash, or a hashing module fleet does not know)."""
    name = _ALGORITHMS.get(algorithm or "rabbit_password_hashing_sha256")
    if name is None or not password_hash:
        return None
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except (binascii.Error, ValueError):
        return None
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(hashlib.new(name, salt + password.encode()).digest(), digest)


def read_passwords_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``user:password`` per line; blank lines and lines starting with ``#`` are skipped,
    and a password is everything after the first colon (spaces included).

    Raises:
        TopologyInvalid: the file cannot be read, or a line has no user or no password.
    """
    source = os.fspath(path)
    try:
        text = open(source, encoding="utf-8").read()  # noqa: SIM115 (read at once)
    except OSError as exc:
        raise TopologyInvalid(source, [Problem("", f"cannot read file: {exc.strerror}")]) from None
    passwords: dict[str, str] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, password = line.partition(":")
        user = user.strip()
        if not colon or not user or not password:
            problems.append(Problem(f"line {number}", "expected user:password"))
        elif user in passwords:
            problems.append(Problem(f"line {number}", f"user {user!r} is listed twice"))
        else:
            passwords[user] = password
    if problems:
        raise TopologyInvalid(source, problems)
    return passwords


def collect_passwords(
    users: Iterable[str],
    environ: Mapping[str, str],
    file: Mapping[str, str] | None = None,
    *,
    source: str = "--passwords-file",
) -> dict[str, str]:
    """The password of each of `users` that has one: from `file`, else the environment.

    Raises:
        TopologyInvalid: the file names a user that is not one of `users` (a typo
            would otherwise leave the intended user without its password).
    """
    names = list(users)
    file = file or {}
    unknown = sorted(set(file) - set(names))
    if unknown:
        known = ", ".join(names) or "none"
        raise TopologyInvalid(
            source,
            [
                Problem(user, f"no such user in this topology (its users: {known})")
                for user in unknown
            ],
        )
    found: dict[str, str] = {}
    for user in names:
        password = file.get(user, environ.get(password_variable(user)))
        if password:
            found[user] = password
    return found


def with_password(url: str, environ: Mapping[str, str]) -> str:
    """An AMQP URL that names a user but no password, with the user's password from
    `environ` put in (``amqp://fleet-orders@rabbit/shop`` + FLEET_PASSWORD_FLEET_ORDERS
    → ``amqp://fleet-orders:…@rabbit/shop``, percent-encoded); other URLs unchanged.

    So a process connects as its own user with the same variable `apply` reads, and
    the password is neither on its command line nor in need of URL quoting.

    Raises:
        ValueError: the URL names a user without a password, and the variable is not set.
    """
    parts = urlsplit(url)
    if parts.username is None or parts.password is not None or "auth=external" in parts.query:
        return url
    user = unquote(parts.username)
    password = environ.get(password_variable(user))
    if not password:
        raise ValueError(
            f"the URL names user {user!r} without a password, and {password_variable(user)} "
            "is not set (set it, or write the password in the URL)"
        )
    credentials = f"{parts.username}:{quote(password, safe='')}"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}"))
