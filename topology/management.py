"""A small client for the RabbitMQ management HTTP API, bound to one vhost.

`plan` reads the live broker through it, `topology.record` peeks at the last
applied topology, `apply` keeps the broker users of `access.users`, and the
dead-letter tooling lists and inspects queues. Every failure to talk to the API
becomes `BrokerUnreachable` with one line saying how to fix it; callers never
see an httpx exception.

Over https the API's certificate is checked against the CA its URL names
(``https://rabbit:15671?cafile=/ca.pem``), else the one the AMQP URL names, else
the system's; a client certificate is sent when one is named (see `topology.tls`).
"""

from __future__ import annotations

import base64
import ssl
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec

from topology.errors import BrokerRefused, BrokerUnreachable, ManagementRefused
from topology.tls import TlsFiles, handshake_problem, ssl_context, tls_files, unreadable_file

DEFAULT_PORT = 15672
DEFAULT_TLS_PORT = 15671
_ENABLE_HINT = "enable it: rabbitmq-plugins enable rabbitmq_management"


class Rate(msgspec.Struct, frozen=True, kw_only=True):
    """A per-second rate the management API averages over its sample window."""

    rate: float = 0.0


class MessageStats(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's message rates: `publish` in, `ack` out (absent until there was traffic)."""

    publish_details: Rate = Rate()
    ack_details: Rate = Rate()
    deliver_get_details: Rate = Rate()


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A queue as the management API reports it (counters are 0 until stats arrive)."""

    name: str
    type: str = "classic"
    durable: bool = True
    auto_delete: bool = False
    exclusive: bool = False
    arguments: dict[str, Any] = {}
    messages_ready: int = 0
    messages_unacknowledged: int = 0
    consumers: int = 0
    message_stats: MessageStats = MessageStats()


class ExchangeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An exchange as the management API reports it; the default exchange is named ''."""

    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = {}


class BindingInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A binding; `destination_type` is 'queue' or 'exchange'."""

    source: str
    destination: str
    destination_type: str
    routing_key: str
    arguments: dict[str, Any] = {}


class PeekedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message read from a queue and put back (its `redelivered` flag is then set)."""

    payload: bytes
    properties: dict[str, Any] = {}
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False


class UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A broker user (global: every vhost sees the same); `tags` is a list since 3.9."""

    name: str
    tags: list[str] | str = []
    password_hash: str = ""
    hashing_algorithm: str = ""

    @property
    def tag_list(self) -> list[str]:
        """The tags as a list (older brokers send one comma-separated string)."""
        if isinstance(self.tags, str):
            return [t for t in self.tags.split(",") if t]
        return list(self.tags)


class PermissionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A user's configure, write and read expressions on one vhost."""

    user: str
    configure: str = ""
    write: str = ""
    read: str = ""


class TopicPermissionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A user's routing-key expressions on one topic exchange of one vhost."""

    user: str
    exchange: str
    write: str = ""
    read: str = ""


class ConsumerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer: the queue it consumes and the connection (by its API name) it is on."""

    queue: str
    connection: str


class ConnectionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A client connection: its API name and the name its client gave it."""

    name: str
    client_name: str = ""


class _RawConsumer(msgspec.Struct, kw_only=True):
    queue: dict[str, Any] = {}
    channel_details: dict[str, Any] = {}


class _RawConnection(msgspec.Struct, kw_only=True):
    name: str = ""
    client_properties: dict[str, Any] = {}


class _RawMessage(msgspec.Struct, kw_only=True):
    payload: str
    payload_encoding: str = "string"
    properties: dict[str, Any] | list[Any] = {}
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False


def management_url_from(amqp_url: str) -> str:
    """``amqp://u:p@host:5672/vh`` → ``http://u:p@host:15672`` (amqps → https on 15671)."""
    parts = urlsplit(amqp_url)
    tls = parts.scheme == "amqps"
    host = parts.hostname or "localhost"
    if ":" in host:  # an IPv6 literal keeps its brackets in a URL
        host = f"[{host}]"
    credentials = ""
    if parts.username is not None:
        credentials = quote(unquote(parts.username), safe="")
        if parts.password is not None:
            credentials += ":" + quote(unquote(parts.password), safe="")
        credentials += "@"
    port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    return f"{'https' if tls else 'http'}://{credentials}{host}:{port}"


def vhost_from(amqp_url: str) -> str:
    """The vhost an AMQP URL names: its path, URL-decoded; no path means '/'."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class Management:
    """The management API of one broker, scoped to one vhost.

    Args:
        url: the API's base URL; credentials in it are used for basic auth
            (default guest/guest), and over https its query may name TLS files.
        vhost: the vhost every call reads.
        timeout: seconds to wait for each answer.
        tls: the CA and client certificate for https (default: those `url` names).

    Use it as a context manager, or call `close()`.

    Raises:
        BrokerRefused: a TLS file cannot be read or is not a certificate or key.
    """

    def __init__(
        self, url: str, vhost: str = "/", *, timeout: float = 10.0, tls: TlsFiles | None = None
    ):
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        self.base_url = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        self.vhost = vhost
        self.user = unquote(parts.username) if parts.username is not None else "guest"
        password = unquote(parts.password) if parts.password is not None else "guest"
        self._timeout = timeout
        #: What an https API's certificate is checked against (True: the system's CAs).
        self.verify: ssl.SSLContext | bool = True
        if parts.scheme == "https":
            self.verify = _verify(self.base_url, tls if tls is not None else tls_files(url))
        self._client = httpx.Client(
            base_url=self.base_url, auth=(self.user, password), timeout=timeout, verify=self.verify
        )

    @classmethod
    def for_broker(cls, amqp_url: str, management_url: str | None = None) -> Management:
        """The API of the broker and vhost an AMQP URL names.

        Args:
            amqp_url: the broker; its path is the vhost.
            management_url: the API's base URL, when it is not the AMQP host on
                port 15672; without credentials of its own it uses the AMQP URL's.
        """
        url = management_url or management_url_from(amqp_url)
        if urlsplit(url).username is None:
            # Borrow the AMQP URL's credentials, already quoted, for the API URL.
            amqp = urlsplit(management_url_from(amqp_url))
            if amqp.username is not None:
                credentials = amqp.netloc.rpartition("@")[0]
                parts = urlsplit(url)
                url = parts._replace(netloc=f"{credentials}@{parts.netloc}").geturl()
        own = tls_files(url)
        return cls(url, vhost_from(amqp_url), tls=own if own.given else tls_files(amqp_url))

    def queues(self) -> list[QueueInfo]:
        """Every queue of the vhost."""
        return msgspec.json.decode(self._list("queues"), type=list[QueueInfo])

    def queue(self, name: str) -> QueueInfo | None:
        """One queue of the vhost, or None if there is no such queue."""
        response = self._request("GET", f"/api/queues/{self._vhost}/{_part(name)}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        return msgspec.json.decode(response.content, type=QueueInfo)

    def exchanges(self) -> list[ExchangeInfo]:
        """Every exchange of the vhost, the default and amq.* ones included."""
        return msgspec.json.decode(self._list("exchanges"), type=list[ExchangeInfo])

    def bindings(self) -> list[BindingInfo]:
        """Every binding of the vhost, those of the default exchange included."""
        return msgspec.json.decode(self._list("bindings"), type=list[BindingInfo])

    def consumers(self) -> list[ConsumerInfo]:
        """Every consumer of the vhost's queues."""
        raw = msgspec.json.decode(self._list("consumers"), type=list[_RawConsumer])
        return [
            ConsumerInfo(
                queue=str(c.queue.get("name", "")),
                connection=str(c.channel_details.get("connection_name", "")),
            )
            for c in raw
        ]

    def connections(self) -> list[ConnectionInfo]:
        """The vhost's client connections (a user tagged only `management` sees its own)."""
        body = self._vhost_get(f"/api/vhosts/{self._vhost}/connections")
        raw = msgspec.json.decode(body, type=list[_RawConnection])
        return [
            ConnectionInfo(
                name=c.name, client_name=str(c.client_properties.get("connection_name", ""))
            )
            for c in raw
        ]

    def users(self) -> list[UserInfo]:
        """Every user of the broker (needs the `administrator` tag)."""
        response = self._request("GET", "/api/users", needs="administrator")
        return msgspec.json.decode(response.content, type=list[UserInfo])

    def permissions(self) -> list[PermissionInfo]:
        """Every user's permissions on the vhost (needs the `administrator` tag)."""
        content = self._vhost_get(f"/api/vhosts/{self._vhost}/permissions", needs="administrator")
        return msgspec.json.decode(content, type=list[PermissionInfo])

    def topic_permissions(self) -> list[TopicPermissionInfo]:
        """Every user's topic permissions on the vhost (needs the `administrator` tag)."""
        content = self._vhost_get(
            f"/api/vhosts/{self._vhost}/topic-permissions", needs="administrator"
        )
        return msgspec.json.decode(content, type=list[TopicPermissionInfo])

    def put_user(
        self,
        name: str,
        *,
        tags: list[str],
        password: str | None = None,
        password_hash: str | None = None,
        hashing_algorithm: str | None = None,
    ) -> None:
        """Create or update a user. Without a password (or a hash to keep) the broker
        clears it, so an update that keeps the password passes the current hash."""
        body: dict[str, Any] = {"tags": ",".join(tags)}
        if password is not None:
            body["password"] = password
        elif password_hash is not None:
            body["password_hash"] = password_hash
            if hashing_algorithm:
                body["hashing_algorithm"] = hashing_algorithm
        self._change("PUT", f"/api/users/{_part(name)}", body)

    def put_permissions(self, user: str, *, configure: str, write: str, read: str) -> None:
        """Set a user's permissions on the vhost."""
        self._change(
            "PUT",
            f"/api/permissions/{self._vhost}/{_part(user)}",
            {"configure": configure, "write": write, "read": read},
        )

    def delete_permissions(self, user: str) -> None:
        """Take away a user's permissions on the vhost (absent ones are no error)."""
        self._change("DELETE", f"/api/permissions/{self._vhost}/{_part(user)}")

    def put_topic_permission(self, user: str, *, exchange: str, write: str, read: str) -> None:
        """Set a user's topic permission on one exchange of the vhost."""
        self._change(
            "PUT",
            f"/api/topic-permissions/{self._vhost}/{_part(user)}",
            {"exchange": exchange, "write": write, "read": read},
        )

    def delete_topic_permission(self, user: str, exchange: str) -> None:
        """Take away a user's topic permission on one exchange of the vhost."""
        self._change(
            "DELETE", f"/api/topic-permissions/{self._vhost}/{_part(user)}/{_part(exchange)}"
        )

    def peek(self, queue: str, count: int = 1) -> list[PeekedMessage] | None:
        """Up to `count` messages from the head of a queue, left in the queue.

        The broker requeues each one at once, so they count as redelivered. None
        if there is no such queue.
        """
        response = self._request(
            "POST",
            f"/api/queues/{self._vhost}/{_part(queue)}/get",
            json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto"},
        )
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        raw = msgspec.json.decode(response.content, type=list[_RawMessage])
        return [
            PeekedMessage(
                payload=(
                    base64.b64decode(m.payload)
                    if m.payload_encoding == "base64"
                    else m.payload.encode()
                ),
                # The API sends an empty list, not an object, for no properties.
                properties=m.properties if isinstance(m.properties, dict) else {},
                exchange=m.exchange,
                routing_key=m.routing_key,
                redelivered=m.redelivered,
            )
            for m in raw
        ]

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> Management:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Management {self.base_url} vhost {self.vhost!r}>"

    @property
    def _vhost(self) -> str:
        return _part(self.vhost)

    def _list(self, kind: str) -> bytes:
        return self._vhost_get(f"/api/{kind}/{self._vhost}")

    def _vhost_get(self, path: str, *, needs: str = "management") -> bytes:
        """A GET of something of the vhost; a 404 means the vhost does not exist."""
        response = self._request("GET", path, needs=needs)
        if response.status_code == httpx.codes.NOT_FOUND:
            raise BrokerUnreachable(
                f"vhost {self.vhost!r} does not exist on the broker at {self.base_url} "
                f"(create it: rabbitmqctl add_vhost {self.vhost})"
            )
        return response.content

    def _change(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        """A write (needs the `administrator` tag); a 404 on a DELETE means already gone."""
        response = self._request(method, path, json=body, needs="administrator")
        if response.status_code == httpx.codes.NOT_FOUND and method != "DELETE":
            raise BrokerUnreachable(
                f"the RabbitMQ management API at {self.base_url} answered 404 to "
                f"{method} {path}: {response.text.strip()[:200]}"
            )

    def _request(
        self, method: str, path: str, *, needs: str = "management", **kwargs: Any
    ) -> httpx.Response:
        """One call; any failure but 404 raises BrokerUnreachable (a refused user,
        ManagementRefused); `needs` is the tag the call takes, for that message."""
        where = f"the RabbitMQ management API at {self.base_url}"
        try:
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.RemoteProtocolError:
                # The server closed a kept-alive connection as this request went out
                # (RabbitMQ 4's web server does so after some requests on one): once
                # more, on a new connection, unless the request may not be repeated.
                if method == "POST":
                    raise
                response = self._client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            tls = handshake_problem(where, exc)
            if tls is not None:
                raise BrokerRefused(tls) from None
            reason = "connection refused" if "refused" in str(exc).lower() else str(exc)
            raise BrokerUnreachable(f"cannot reach {where}: {reason} ({_ENABLE_HINT})") from None
        except httpx.TimeoutException:
            raise BrokerUnreachable(
                f"cannot reach {where}: no answer within {self._timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise BrokerUnreachable(f"cannot reach {where}: {exc}") from None
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            raise ManagementRefused(
                f"{where} refused user {self.user!r} ({response.status_code}): check the "
                f"credentials in --url or --management-url, and that the user has the "
                f"{needs!r} tag"
            )
        if response.is_error and response.status_code != httpx.codes.NOT_FOUND:
            raise BrokerUnreachable(
                f"{where} answered {response.status_code} to {method} {path}: "
                f"{response.text.strip()[:200]}"
            )
        return response


def _verify(base_url: str, files: TlsFiles) -> ssl.SSLContext:
    """The ssl context for an https API; a file that cannot be used is BrokerRefused."""
    where = f"the RabbitMQ management API at {base_url}"
    unreadable = unreadable_file(files)
    if unreadable is not None:
        raise BrokerRefused(f"cannot connect to {where}: {unreadable}")
    try:
        return ssl_context(files)
    except (ssl.SSLError, OSError) as exc:
        raise BrokerRefused(f"cannot use the TLS files for {where}: {exc}") from None


def _part(name: str) -> str:
    """A vhost or queue name as one URL path segment ('/' → '%2F')."""
    return quote(name, safe="")
