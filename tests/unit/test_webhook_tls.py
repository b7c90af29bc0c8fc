"""A pinned webhook over TLS: the connection goes to the checked address, while SNI and
the certificate check use the URL's host name (a loopback HTTPS server, a throwaway
self-signed certificate)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from workers.standard_webhooks import new_secret
from workers.webhooks.sender import post


class _Server(HTTPServer):
    seen: list[str | None]  # Host headers
    sni: list[str | None]  # server names the TLS handshakes asked for


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(self.headers.get("Host"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate names only hooks.test."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen, server.sni = [], []

    def note_sni(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        server.sni.append(name)

    context.sni_callback = note_sni
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, cert
    server.shutdown()
    server.server_close()


async def test_sni_and_certificate_use_the_name_while_connecting_to_the_address(
    https_server: tuple[_Server, Path],
) -> None:
    # Given
    server, cert = https_server
    port = server.server_address[1]
    # When
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as client:
        attempt = await post(
            client,
            f"https://hooks.test:{port}/h",
            message_id="m-tls",
            body=b"{}",
            secrets=(new_secret(),),
            seconds=5,
            connect_to="127.0.0.1",
        )
    # Then
    assert (attempt.status, attempt.error) == (204, None)
    assert server.sni == ["hooks.test"]
    assert server.seen == [f"hooks.test:{port}"]


async def test_a_certificate_for_another_name_fails_the_attempt(
    https_server: tuple[_Server, Path],
) -> None:
    """Pinning does not weaken verification: the name must match the certificate."""
    # Given
    server, cert = https_server
    port = server.server_address[1]
    # When
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as client:
        attempt = await post(
            client,
            f"https://other.test:{port}/h",
            message_id="m-tls",
            body=b"{}",
            secrets=(new_secret(),),
            seconds=5,
            connect_to="127.0.0.1",
        )
    # Then
    assert attempt.status is None
    assert "certificate" in (attempt.error or "").lower()
    assert server.seen == []
