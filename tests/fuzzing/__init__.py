"""Schemathesis against the running API: `scripts/fuzz`, and a short run in `scripts/test`."""
