"""Sealing short secrets at rest: AES-GCM under a key derived from another secret.

Used for what must be stored yet never readable from the database alone: a refresh
response kept for its grace window (keyed by the spent token), an outbox message's
token (keyed by the secret key). `bound_to` ties a sealed value to its context: it
opens only with the same binding.
"""

import base64
import hashlib
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def key(purpose: str, secret: str) -> bytes:
    """A 256-bit key for one purpose, derived from a high-entropy secret."""
    return hashlib.sha256(f"{purpose}:{secret}".encode()).digest()


def seal(with_key: bytes, plain: str, bound_to: str = "") -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(with_key).encrypt(nonce, plain.encode(), bound_to.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(keys: Iterable[bytes], sealed: str, bound_to: str = "") -> str | None:
    """The plain value, under the first of `keys` that opens it; None when none does."""
    raw = base64.b64decode(sealed)
    for candidate in keys:
        try:
            return AESGCM(candidate).decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
        except InvalidTag:
            continue
    return None
