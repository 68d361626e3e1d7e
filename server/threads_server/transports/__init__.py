"""The transports, side by side: gRPC (``grpc``) and HTTP/JSON (``http``). Each turns its
wire format into calls of the same handlers through ``service.call``; neither imports the
other."""
