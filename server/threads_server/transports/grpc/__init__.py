"""The gRPC transport: the servicer's registration, health and reflection."""
