"""``TLS``: how the client verifies the server and, for mutual TLS, proves who it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

PEMSource = bytes | str | Path
"""PEM content as ``bytes``, or the path of a PEM file as ``str`` or ``Path``."""


@dataclass(frozen=True)
class TLS:
    """TLS settings for a channel to the service.

    Each PEM field takes the content as ``bytes`` or a file path as ``str``/``Path``;
    files are read by ``channel_credentials()``, each time it is called.

    ``root_certificates``: the CA certificates that sign the server's certificate;
    ``None`` trusts the system's roots (gRPC's bundled ones unless
    ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` says otherwise).
    ``client_certificate`` and ``client_key``: both or neither; both for a server that
    requires client certificates (mutual TLS).
    ``server_name``: the name the server's certificate must carry, when it differs from
    the target's host (dialing an IP address or a load balancer's name).
    """

    root_certificates: PEMSource | None = None
    client_certificate: PEMSource | None = None
    client_key: PEMSource | None = field(default=None, repr=False)
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError(
                "TLS: client_certificate and client_key go together (mutual TLS): "
                "give both or neither"
            )
        if self.server_name == "":
            raise ValueError("TLS: server_name must not be empty; leave it None instead")

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials; raises OSError for a file that cannot be read."""
        return grpc.ssl_channel_credentials(
            root_certificates=_pem("root_certificates", self.root_certificates),
            private_key=_pem("client_key", self.client_key),
            certificate_chain=_pem("client_certificate", self.client_certificate),
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Channel options these settings need alongside the credentials (maybe none)."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def _pem(name: str, source: PEMSource | None) -> bytes | None:
    """The PEM bytes of a field; rejects what cannot be PEM, which gRPC would only report
    as an unexplained UNAVAILABLE at the first call."""
    if source is None:
        return None
    if isinstance(source, str) and "-----BEGIN " in source:
        raise ValueError(f"TLS.{name}: a str is a file path; pass PEM content as bytes")
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if b"-----BEGIN " not in data:
        where = "" if isinstance(source, bytes) else f" ({source})"
        raise ValueError(f"TLS.{name}{where}: not PEM (no -----BEGIN line)")
    return data
