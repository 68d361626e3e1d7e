"""Thin Python client for threads.v1."""
