"""Email: a channel of the durable queue (api/core/queue.py), its transports, its texts."""
