"""threads gRPC server."""

from importlib import metadata

try:
    # The installed distribution's version, built from client/VERSION (the one place it is
    # written): threads-server --version, the threads_build_info metric.
    __version__ = metadata.version("threads-service")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
    __version__ = "0+unknown"
