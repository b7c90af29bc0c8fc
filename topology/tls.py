"""TLS to the broker: the certificate files an ``amqps://`` URL names, an ssl context for
the management API, and one readable sentence for a handshake that failed.

fleet reads TLS settings where aiormq does, from the URL's query:

    amqps://fleet-orders@rabbit:5671/shop?cafile=/etc/fleet/ca.pem
        &certfile=/etc/fleet/client.pem&keyfile=/etc/fleet/client.key

`cafile` (or `capath`) is the CA that signed the broker's certificate (default:
the system's CAs); `certfile` and `keyfile` are this process's certificate and
key, for a broker that asks for one. `no_verify_ssl=1` turns verification off
(tests only). The management API over https uses the same files unless its own
URL names others.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

#: The query parameters that name files, in the order they are checked.
FILE_PARAMETERS = ("cafile", "capath", "certfile", "keyfile")

_SSL_REASON = re.compile(r"\[SSL: (?P<code>[A-Z0-9_]+)\] (?P<text>[^(']*)")


@dataclass(frozen=True)
class TlsFiles:
    """The TLS settings of one URL's query."""

    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True

    @property
    def given(self) -> bool:
        """Whether the URL says anything about TLS."""
        return any((self.cafile, self.capath, self.certfile, self.keyfile)) or not self.verify


def tls_files(url: str) -> TlsFiles:
    """``…?cafile=/ca.pem&certfile=…`` → TlsFiles; a URL without them gets the defaults."""
    query = parse_qs(urlsplit(url).query)

    def first(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    return TlsFiles(
        cafile=first("cafile"),
        capath=first("capath"),
        certfile=first("certfile"),
        keyfile=first("keyfile"),
        verify=first("no_verify_ssl") in (None, "0"),
    )


def unreadable_file(files: TlsFiles) -> str | None:
    """A sentence naming the first of `files` that cannot be read; None if all can."""
    for name in FILE_PARAMETERS:
        path = getattr(files, name)
        if path is None:
            continue
        exists = os.path.isdir(path) if name == "capath" else os.path.isfile(path)
        if not exists or not os.access(path, os.R_OK):
            return f"the URL's {name}= names {path}, which {_why_unreadable(path)}"
    if files.keyfile and not files.certfile:
        return "the URL has a keyfile= but no certfile=: give both, or neither"
    return None


def ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context trusting `files`' CA (else the system's), with its certificate if any.

    Raises:
        ssl.SSLError, OSError: a file is not a PEM certificate or key, or cannot be read.
    """
    context = ssl.create_default_context(cafile=files.cafile, capath=files.capath)
    if files.certfile:
        context.load_cert_chain(files.certfile, files.keyfile)
    if not files.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def handshake_problem(where: str, error: BaseException) -> str | None:
    """One sentence for a failed TLS handshake with `where` (``RabbitMQ at host:5671``),
    saying what to change; None if `error` is not a TLS failure."""
    text = " ".join(str(a) for a in (*error.args, error.__cause__ or "")) or str(error)
    found = _SSL_REASON.search(text)
    if found is None:
        return None
    code, detail = found["code"], found["text"].strip().rstrip(".")
    if code == "CERTIFICATE_VERIFY_FAILED":
        return (
            f"{where} failed TLS verification ({detail}): name the CA that signed the "
            "broker's certificate in the URL's cafile=, and the host its certificate names"
        )
    if code.endswith("CERTIFICATE_REQUIRED"):
        return f"{where} requires a client certificate: add certfile= and keyfile= to the URL"
    if code.endswith(("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (
            f"{where} refused this process's client certificate ({detail}): it must be "
            "signed by a CA the broker trusts"
        )
    if code == "WRONG_VERSION_NUMBER":
        return f"{where} does not speak TLS on that port: use its TLS port, or amqp://"
    return f"the TLS handshake with {where} failed: {detail or code}"


def _why_unreadable(path: str) -> str:
    if not os.path.exists(path):
        return "does not exist"
    return "cannot be read by this process"
