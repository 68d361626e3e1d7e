"""HTTP/JSON front door: the proto's google.api.http routes, served in-process (docs/http.md)."""
