"""amqps:// URLs: their TLS files, what fleet logs of them, and the sentence a failed
handshake becomes. No broker (tests/integration/test_tls.py runs one)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from topology import BrokerRefused
from topology.management import Management
from topology.nodes import split_urls
from topology.tls import TlsFiles, handshake_problem, tls_files, unreadable_file
from workers.runtime.connection import _safe
from workers.runtime.nodes import node_label

TLS_URL = (
    "amqps://fleet-orders:s3cret@rabbit:5671/shop"
    "?cafile=/etc/fleet/ca.pem&certfile=/etc/fleet/client.pem&keyfile=/etc/fleet/client.key"
)


class TestTlsUrls:
    """fleet's own URL handling keeps amqps:// URLs whole and never shows the password."""

    def test_the_query_names_the_tls_files(self) -> None:
        """The parameters aiormq reads: cafile, certfile, keyfile (and no_verify_ssl)."""
        # Given / When
        files = tls_files(TLS_URL)
        # Then
        assert files == TlsFiles(
            cafile="/etc/fleet/ca.pem",
            certfile="/etc/fleet/client.pem",
            keyfile="/etc/fleet/client.key",
        )
        assert files.given
        assert not tls_files("amqps://rabbit/").given
        assert tls_files("amqps://rabbit/?no_verify_ssl=1").verify is False

    def test_a_list_of_tls_urls_keeps_each_query(self) -> None:
        """Every node of a cluster with its own query."""
        # Given
        text = "amqps://a:5671/v?cafile=/ca.pem, amqps://b:5671/v?cafile=/ca.pem"
        # When / Then
        assert split_urls(text) == [
            "amqps://a:5671/v?cafile=/ca.pem",
            "amqps://b:5671/v?cafile=/ca.pem",
        ]

    def test_logs_show_the_url_without_its_password(self) -> None:
        """The TLS files' paths stay: they are no secret."""
        # Given / When
        shown = _safe(TLS_URL)
        # Then
        assert shown == TLS_URL.replace(":s3cret@", ":***@")

    def test_an_at_sign_in_the_query_does_not_fool_the_masking(self) -> None:
        """The password is found in the URL's authority, not by the last '@'."""
        # Given
        url = "amqps://u:pw@rabbit/v?cafile=/home/a@b/ca.pem"
        # When / Then
        assert _safe(url) == "amqps://u:***@rabbit/v?cafile=/home/a@b/ca.pem"

    def test_a_node_label_has_the_tls_port_by_default(self) -> None:
        """amqps:// defaults to 5671; the label has no credentials and no query."""
        # Given / When / Then
        assert node_label("amqps://u:pw@rabbit/shop?cafile=/ca.pem") == "rabbit:5671"
        assert node_label(TLS_URL) == "rabbit:5671"
        assert node_label("amqp://u:pw@rabbit/shop") == "rabbit:5672"


class TestUnreadableFiles:
    """A TLS file that is not there is named before any connection is tried."""

    def test_a_missing_ca_file_is_named(self, tmp_path: Path) -> None:
        """The parameter and the path."""
        # Given
        files = TlsFiles(cafile=str(tmp_path / "nope.pem"))
        # When / Then
        assert unreadable_file(files) == (
            f"the URL's cafile= names {tmp_path / 'nope.pem'}, which does not exist"
        )

    def test_a_key_without_its_certificate_is_refused(self, tmp_path: Path) -> None:
        """aiormq would ignore it silently."""
        # Given
        key = tmp_path / "client.key"
        key.write_text("x")
        # When / Then
        assert unreadable_file(TlsFiles(keyfile=str(key))) == (
            "the URL has a keyfile= but no certfile=: give both, or neither"
        )

    def test_files_that_exist_pass(self, tmp_path: Path) -> None:
        """None: nothing to say."""
        # Given
        ca = tmp_path / "ca.pem"
        ca.write_text("x")
        # When / Then
        assert unreadable_file(TlsFiles(cafile=str(ca))) is None


class TestHandshakeProblems:
    """OpenSSL's codes become a sentence saying what to change."""

    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            (
                OSError(
                    1,
                    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
                    "certificate in certificate chain (_ssl.c:1006)",
                ),
                "RabbitMQ at rabbit:5671 failed TLS verification (certificate verify failed: "
                "self-signed certificate in certificate chain): name the CA that signed the "
                "broker's certificate in the URL's cafile=, and the host its certificate names",
            ),
            (
                ConnectionError(
                    "Server communication error: SSLError(1, '[SSL: "
                    "TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required "
                    "(_ssl.c:2580)')"
                ),
                "RabbitMQ at rabbit:5671 requires a client certificate: add certfile= and "
                "keyfile= to the URL",
            ),
            (
                OSError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:1006)"),
                "RabbitMQ at rabbit:5671 refused this process's client certificate (tlsv1 "
                "alert unknown ca): it must be signed by a CA the broker trusts",
            ),
            (
                OSError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"),
                "RabbitMQ at rabbit:5671 does not speak TLS on that port: use its TLS port, "
                "or amqp://",
            ),
        ],
    )
    def test_each_failure_says_what_to_change(self, error: BaseException, expected: str) -> None:
        """One line each."""
        # Given / When / Then
        assert handshake_problem("RabbitMQ at rabbit:5671", error) == expected

    def test_other_errors_are_not_tls_problems(self) -> None:
        """A refused connection stays an outage, to be retried."""
        # Given / When / Then
        assert handshake_problem("RabbitMQ at rabbit:5671", ConnectionRefusedError(111)) is None


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate made by openssl."""
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=fleet unit test CA", "-keyout", str(folder / "ca.key"),
         "-out", str(folder / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / "ca.pem"


class TestManagementOverHttps:
    """The management API of an amqps:// broker is https, checked with the same CA."""

    def test_the_amqp_urls_ca_is_used_for_the_api(self, ca: Path) -> None:
        """https on 15671, trusting the cafile of the AMQP URL."""
        # Given
        url = f"amqps://u:p@rabbit/shop?cafile={ca}"
        # When
        with Management.for_broker(url) as api:
            verify = api.verify
        # Then
        assert api.base_url == "https://rabbit:15671"
        assert isinstance(verify, ssl.SSLContext)
        assert verify.verify_mode == ssl.CERT_REQUIRED
        assert [c["subject"] for c in verify.get_ca_certs()] == [
            ((("commonName", "fleet unit test CA"),),)
        ]

    def test_a_missing_ca_file_is_one_line(self, tmp_path: Path) -> None:
        """BrokerRefused, naming the file, before any request."""
        # Given
        url = f"amqps://u:p@rabbit/shop?cafile={tmp_path}/nope.pem"
        # When
        with pytest.raises(BrokerRefused) as refused:
            Management.for_broker(url)
        # Then
        assert str(refused.value) == (
            "cannot connect to the RabbitMQ management API at https://rabbit:15671: "
            f"the URL's cafile= names {tmp_path}/nope.pem, which does not exist"
        )

    def test_a_file_that_is_not_a_certificate_is_one_line(self, tmp_path: Path) -> None:
        """OpenSSL's complaint, after the API it was for."""
        # Given
        bogus = tmp_path / "ca.pem"
        bogus.write_text("not a certificate\n")
        # When
        with pytest.raises(BrokerRefused, match=r"^cannot use the TLS files for the RabbitMQ "):
            Management.for_broker(f"amqps://u:p@rabbit/shop?cafile={bogus}")
