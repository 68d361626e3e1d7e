"""The service rules, whatever the transport: the ``threads.v1.ThreadService`` handlers
(``handlers``), the per-call pipeline both transports share (``call``: auth, deadline,
errors to a status, one log line), and the checks on what a request carries."""
