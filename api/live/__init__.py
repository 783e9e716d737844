"""Live changes: the change-stream feed and its WebSocket route."""
