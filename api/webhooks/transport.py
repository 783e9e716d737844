"""Sending one delivery: an HTTP POST to an address that was checked, nothing more.

No redirects are followed (a 3xx is a failed attempt: a redirect could point anywhere),
no proxy from the environment is used, the answer's body is read only up to a small cap
and the whole attempt is bounded by WEBHOOK_TIMEOUT_S. The connection goes to the
address `addresses.checked` found for the host, never to a fresh lookup, while the
request still names the host (Host header, and for https the TLS server name, so the
certificate is checked against the name the webhook's owner gave).
"""

import asyncio
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx2

from api.webhooks import addresses
from api.webhooks.addresses import Network, RefusedUrl

USER_AGENT = "Docstore-Webhooks/1"
REFUSED = "refused: "
RESPONSE_CAP_BYTES = 4096  # what a delivery log keeps of an answer is far less


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the answer's status, or why there was none."""

    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None  # as the receiver asked (Retry-After)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """The address policy refused the URL now: no connection was made."""
        return self.error is not None and self.error.startswith(REFUSED)

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver wants no more (the webhook is disabled)."""
        return self.status == 410


class Transport:
    def __init__(self, timeout_s: float, allowed: tuple[Network, ...] = ()) -> None:
        self.timeout_s, self.allowed = timeout_s, allowed
        self.client = httpx2.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx2.Timeout(timeout_s),
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """POST `body` to `url`, its host's addresses checked again now; the first address
        that takes the connection gets the request."""
        try:
            target = await addresses.checked(url, self.allowed)
        except RefusedUrl as refused:
            return Outcome(error=f"{REFUSED}{refused}")
        error = "no address to connect to"
        for address in target.addresses:
            try:
                # The whole attempt, not each step: a receiver answering a byte at a time
                # holds a delivery no longer than this either.
                async with asyncio.timeout(self.timeout_s):
                    return await self._post_to(target, address, body, headers)
            except (httpx2.TimeoutException, TimeoutError):
                return Outcome(error=f"timed out after {self.timeout_s:g}s")
            except httpx2.ConnectError as failed:
                error = f"could not connect to {address}: {failed}"  # the next address
            except httpx2.HTTPError as failed:
                return Outcome(error=f"{type(failed).__name__}: {failed}")
        return Outcome(error=error)

    async def _post_to(
        self,
        target: addresses.Target,
        address: addresses.IPAddress,
        body: bytes,
        headers: dict[str, str],
    ) -> Outcome:
        url = httpx2.URL(target.url).copy_with(host=str(address), port=target.port)
        default_port = 443 if target.scheme == "https" else 80
        host = target.host if ":" not in target.host else f"[{target.host}]"
        host_header = host if target.port == default_port else f"{host}:{target.port}"
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self.client.build_request(
            "POST",
            url,
            content=body,
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            extensions=extensions,
        )
        response = await self.client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= RESPONSE_CAP_BYTES:
                    break  # what an answer says beyond this is not kept, nor waited for
        finally:
            await response.aclose()
        return Outcome(
            status=response.status_code,
            retry_after_s=retry_after(response.headers.get("Retry-After")),
        )


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds, or an HTTP-date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
