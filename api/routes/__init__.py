"""One router per concern, mounted under API_PREFIX by the app factory."""

API_PREFIX = "/api/v1"
