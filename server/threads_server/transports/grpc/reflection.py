"""Server reflection that also resolves fully-qualified method names.

Stock grpcio-reflection asks the descriptor pool for the file containing a symbol, and the
pool does not index service methods, so ``threads.v1.ThreadService.Copy`` gets NOT_FOUND
(grpc/grpc#34743). ghz and grpcurl ask for exactly that symbol (bojand/ghz#419), so without
this they cannot call the service from reflection alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc import aio
from grpc_reflection.v1alpha import reflection


class MethodResolvingPool:
    """A descriptor pool view whose symbol lookup falls back to ``<service>.<method>``.

    Everything else is delegated to the wrapped pool unchanged.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool if pool is not None else descriptor_pool.Default()

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:  # noqa: N802
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                service = None
            if service is None or method not in service.methods_by_name:
                raise
            return service.file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def enable_reflection(service_names: Iterable[str], server: aio.Server) -> None:
    """Adds the v1alpha reflection service, listing ``service_names`` and itself."""
    names = (*service_names, reflection.SERVICE_NAME)
    # Duck-typed: the servicer only calls Find* methods, which the view provides.
    pool = cast(descriptor_pool.DescriptorPool, MethodResolvingPool())
    reflection.enable_server_reflection(names, server, pool=pool)
