"""threads gRPC server."""
