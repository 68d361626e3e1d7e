"""Operations: what runs the service rather than what it does. Settings (``config``), the
worker processes (``workers``), the embedded Valkey server (``embedded``), the event loop,
TLS files, Prometheus metrics, OpenTelemetry tracing and log formats.

Every layer may use these; they use nothing of the service but ``errors`` and ``pb``.
"""
