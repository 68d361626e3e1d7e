"""The store: every Redis operation of the service, each one Lua script call (``lua/``).

``thread_store.ThreadStore`` holds the operations (Copy among them); ``corridor`` is the one
way a call reaches Redis; ``connect`` builds the Redis clients; ``migrate`` is the
``threads-server migrate`` command. Nothing above this package imports redis: Redis's
exceptions leave it as the service's own errors (``redis_errors``).
"""
