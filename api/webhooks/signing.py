"""Standard Webhooks signatures: the secrets, and the headers every delivery carries.

A secret is `whsec_` and the base64 of 32 random bytes, shown to its owner once; the
database keeps it sealed (api/core/sealing.py, bound to its webhook), so the database
alone does not reveal it. A delivery carries `webhook-id` (the same on every retry),
`webhook-timestamp` (Unix seconds, this attempt's) and `webhook-signature`: `v1,` and
the base64 HMAC-SHA256 of `id.timestamp.body` under each secret in use (two during a
rotation's overlap, the newest first), space-separated, as the specification says.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from api.core import sealing

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets_in_use: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed by every secret in use."""
    signatures = " ".join(signature(s, message_id, timestamp, body) for s in secrets_in_use)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def sealed(secret: str, secret_key: str, webhook_id: str) -> str:
    """The secret as stored: sealed under SECRET_KEY, opening only for its webhook."""
    return sealing.seal(sealing.key("webhook-secret", secret_key), secret, webhook_id)


def opened(stored: str, secret_keys: Sequence[str], webhook_id: str) -> str | None:
    """A stored secret, under SECRET_KEY or a previous one; None when none opens it."""
    keys = [sealing.key("webhook-secret", key) for key in secret_keys]
    return sealing.unseal(keys, stored, webhook_id)
