"""Access tokens: short-lived JWTs (joserfc), signed with keys known by `kid`.

No FastAPI here: this module is used by the API and the benchmark's floor alike.
"""

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, OctKey

ALGORITHM = "HS256"  # pinned: tokens naming any other algorithm are refused


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    token_version: int
    session_id: str
    expires_at: int  # seconds since the epoch


def _key(secret: str) -> OctKey:
    kid = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return OctKey.import_key(secret.encode(), {"kid": kid})


class TokenSigner:
    """Issues access tokens with the active key; accepts those of the active and previous keys.

    Every key is known by its `kid`, so rotating (the active key becomes a previous one)
    logs nobody out, and dropping a previous key rejects what it signed.
    """

    def __init__(
        self,
        secret: str,
        issuer: str,
        audience: str,
        lifetime_s: int,
        previous: Sequence[str] = (),
    ) -> None:
        self._key = _key(secret)
        self.kid = str(self._key.kid)
        keys = [self._key, *(_key(old) for old in previous)]
        self._keys = {str(key.kid): key for key in keys}
        self.issuer, self.audience, self.lifetime_s = issuer, audience, lifetime_s
        self._claims = jwt.JWTClaimsRegistry(
            leeway=5,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )

    def issue(self, user_id: str, token_version: int, session_id: str) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(12),
            "ver": token_version,
            "sid": session_id,
        }
        return jwt.encode({"alg": ALGORITHM, "kid": self.kid}, claims, self._key)

    def _key_for(self, token: GuestProtocol) -> OctKey:
        # A token must name its key: no kid, or one we do not hold, is refused.
        key = self._keys.get(str(token.headers().get("kid")))
        if key is None:
            raise InvalidToken("unknown or missing kid")
        return key

    def verify(self, token: str) -> AccessClaims:
        try:
            decoded = jwt.decode(token, self._key_for, algorithms=[ALGORITHM])
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidToken(str(error)) from None
        claims = decoded.claims
        sub, version, sid = claims.get("sub"), claims.get("ver", 0), claims.get("sid")
        if not isinstance(sub, str) or not isinstance(version, int) or not isinstance(sid, str):
            raise InvalidToken("malformed claims")
        return AccessClaims(
            user_id=sub, token_version=version, session_id=sid, expires_at=int(claims["exp"])
        )
