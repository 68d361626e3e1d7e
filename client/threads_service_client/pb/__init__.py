"""Generated protobuf and gRPC stubs for ``threads.v1`` (``make proto``; do not edit).

The server, the client and the tests all import the API from here.
"""
