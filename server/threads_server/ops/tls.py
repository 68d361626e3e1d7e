"""TLS and mutual TLS for the gRPC port, from ``--tls-cert-file``, ``--tls-key-file`` and
``--tls-client-ca-file``.

gRPC checks none of these files until the port is bound, and then reports any problem as
"Failed to bind to address", which reads like a port conflict. So they are parsed here
first (with ``cryptography``) and every problem becomes a ``TLSConfigError`` naming the
flag and the file. ``python -m threads_server`` calls ``load_tls`` before it starts anything, so
a bad file fails once, before the embedded Redis or any worker starts.

The files are read at start-up (each worker reads them when it starts): rotating a
certificate takes a (rolling) restart.

gRPC itself is imported only inside ``server_credentials``: the ``--workers`` parent
loads this module before it forks, and gRPC must not exist in a process that forks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from threads_server.ops.config import Settings

if TYPE_CHECKING:
    import grpc

_CERT_FLAG = "--tls-cert-file"
_KEY_FLAG = "--tls-key-file"
_CLIENT_CA_FLAG = "--tls-client-ca-file"


class TLSConfigError(ValueError):
    """A TLS file is missing, unreadable or not what its flag needs; says which and why."""


@dataclass(frozen=True)
class TLSMaterial:
    """The PEM bytes gRPC needs, checked: a chain, its key, and the client CAs if any."""

    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


def load_tls(settings: Settings) -> TLSMaterial | None:
    """Reads and checks the TLS files; None when TLS is off.

    Raises TLSConfigError for an unreadable file, a file that is not PEM of the expected
    kind, an encrypted key (gRPC cannot ask for a passphrase), or a key that does not
    belong to the first certificate of the chain.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert_data = _read(_CERT_FLAG, settings.tls_cert_file)
    chain = _certificates(_CERT_FLAG, settings.tls_cert_file, cert_data)
    key_data = _read(_KEY_FLAG, settings.tls_key_file)
    _check_key(settings.tls_key_file, key_data, chain[0], settings.tls_cert_file)
    client_ca = None
    if settings.tls_client_ca_file is not None:
        client_ca = _read(_CLIENT_CA_FLAG, settings.tls_client_ca_file)
        _certificates(_CLIENT_CA_FLAG, settings.tls_client_ca_file, client_ca)
    return TLSMaterial(cert_data, key_data, client_ca)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``; None when TLS is off (serve plaintext).

    With ``--tls-client-ca-file`` the handshake requires a client certificate signed by
    one of those CAs (mutual TLS).
    """
    material = load_tls(settings)
    if material is None:
        return None
    import grpc  # noqa: PLC0415 (never in the pre-fork parent; see the module docstring)

    return grpc.ssl_server_credentials(
        [(material.private_key, material.certificate_chain)],
        root_certificates=material.client_ca,
        require_client_auth=material.mutual,
    )


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"{flag} {path}: cannot read it ({exc.strerror})") from exc


def _certificates(flag: str, path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TLSConfigError(
            f"{flag} {path}: not PEM certificates (want -----BEGIN CERTIFICATE----- blocks)"
        ) from exc


def _check_key(path: Path, data: bytes, leaf: x509.Certificate, cert_path: Path) -> None:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography's way of saying "encrypted, and no password"
        raise TLSConfigError(
            f"{_KEY_FLAG} {path}: the private key is encrypted; give it unencrypted"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TLSConfigError(
            f"{_KEY_FLAG} {path}: not a PEM private key (want a -----BEGIN PRIVATE KEY----- "
            "or -----BEGIN RSA/EC PRIVATE KEY----- block)"
        ) from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise TLSConfigError(
            f"{_KEY_FLAG} {path}: not the key of the first certificate in {_CERT_FLAG} "
            f"{cert_path} (the server's own certificate must come first in the chain)"
        )
