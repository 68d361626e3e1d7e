"""Throwaway certificate authorities and certificates for the TLS tests, as PEM files.

``generate(directory)`` makes two unrelated CAs, each with its own client certificate,
and, signed by the first CA, a server certificate for ``localhost`` and ``127.0.0.1`` and
one for the name ``localhost`` only. P-256 keys: quick to make, and served by gRPC.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = datetime.timedelta(days=2)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    """The CA that signs ``server``, ``localhost_only`` and ``client``."""
    server: KeyPair
    """SANs ``localhost`` and ``127.0.0.1``."""
    localhost_only: KeyPair
    """SAN ``localhost`` only: dialing 127.0.0.1 needs the name overridden."""
    client: KeyPair
    other_ca: Path
    """An unrelated CA, trusted by no server here."""
    other_client: KeyPair
    """Signed by ``other_ca``."""


class _Authority:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        names: list[x509.GeneralName] | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            _builder(subject, self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALID)
        .not_valid_after(now + _VALID)
    )


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_pair(
    directory: Path, name: str, issued: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> KeyPair:
    cert, key = issued
    key_path = directory / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return KeyPair(_write_cert(directory / f"{name}.pem", cert), key_path)


def generate(directory: Path) -> Certs:
    """Writes a fresh set of certificates under ``directory`` and returns their paths."""
    ca, other = _Authority("threads test CA"), _Authority("unrelated test CA")
    server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    localhost = x509.DNSName("localhost")
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    return Certs(
        ca=_write_cert(directory / "ca.pem", ca.cert),
        server=_write_pair(
            directory, "server", ca.issue("threads", server_auth, [localhost, loopback])
        ),
        localhost_only=_write_pair(
            directory, "localhost-only", ca.issue("localhost", server_auth, [localhost])
        ),
        client=_write_pair(directory, "client", ca.issue("client", client_auth)),
        other_ca=_write_cert(directory / "other-ca.pem", other.cert),
        other_client=_write_pair(
            directory, "other-client", other.issue("other client", client_auth)
        ),
    )
