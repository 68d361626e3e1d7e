"""Generated protobuf and gRPC stubs for ``threads.v1`` (``make proto``; do not edit).

The server's own copy of the stubs the client distribution carries in
``threads_service_client.pb``: generated from the same ``protos/`` by the same command, so
installing the server never needs the client (nor anything from the index under its name).
"""
