"""Email: the durable outbox, its transports and the message texts."""
