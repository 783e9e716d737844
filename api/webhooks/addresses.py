"""Where a webhook may deliver: public addresses only, unless an operator allows more.

A webhook's URL must not let anyone reach what only the server can: its loopback, the
private network it sits in, a cloud's metadata service (link-local), a carrier's shared
space, multicast, reserved ranges. Every address a host resolves to is checked, when the
webhook is created or changed and again at each delivery, and a delivery connects to an
address that was checked (never a fresh lookup that DNS could have swapped meanwhile).

Hosts are read as a connecting client would read them: `2130706433`, `0177.0.0.1`,
`0x7f.1` and `127.1` are all 127.0.0.1 to the C library, so they are to us; an IPv6
address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4, Teredo) is judged by that
too. WEBHOOK_ALLOWED_NETWORKS (CIDRs) is the only way around the checks.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix (RFC 6052)
RESOLVE_TIMEOUT_S = 5.0


class RefusedUrl(ValueError):
    """Why a URL cannot be a webhook's: said to its owner as it is."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (the addresses checked, in resolver order), and
    the host and port to name in the request (Host header, TLS server name)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def allowed_networks(text: str) -> tuple[Network, ...]:
    """WEBHOOK_ALLOWED_NETWORKS: comma-separated CIDRs (a bare address is its /32, /128)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def literal(host: str) -> IPAddress | None:
    """The address `host` spells, as a connecting client reads it; None for a name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])  # (a zone id changes nothing)
    except ValueError:
        pass
    # What inet_aton takes (and so getaddrinfo, and every client on it): decimal, octal
    # and hex parts, and the one-, two- and three-part forms.
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare) and bare[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _embedded_v4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, allowed: Sequence[Network] = ()) -> str | None:
    """Why a webhook may not deliver to `address` (None: it may)."""
    if any(address in network for network in allowed):
        return None
    inner = _embedded_v4(address)
    if inner is not None:
        why = refusal(inner, allowed)
        return f"{address} carries {inner}: {why}" if why else None
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is link-local (cloud metadata lives there)"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return f"{address} is carrier-grade NAT space"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return f"{address} is a unique local address"
    if address.is_private:
        return f"{address} is a private address"
    if address.is_reserved or not address.is_global:
        return f"{address} is a reserved address"
    return None


_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def parse(url: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, its host and its port; RefusedUrl when it cannot be a webhook's."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedUrl(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("a webhook's URL must be http or https")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("a webhook's URL must not carry credentials (they would be logged)")
    host = parts.hostname
    if not host:
        raise RefusedUrl("a webhook's URL needs a host")
    if parts.fragment:
        raise RefusedUrl("a webhook's URL must not have a fragment")
    return parts, host, port or (443 if parts.scheme == "https" else 80)


async def checked(url: str, allowed: Sequence[Network] = ()) -> Target:
    """`url` with every address its host has now, each one allowed; RefusedUrl when the
    URL is not a webhook's, its host does not resolve, or any address is refused."""
    parts, host, port = parse(url)
    address = literal(host)
    if address is not None:
        addresses: tuple[IPAddress, ...] = (address,)
    else:
        addresses = await _resolve(host, port)
    for each in addresses:
        why = refusal(each, allowed)
        if why:
            raise RefusedUrl(f"{host} is not a public address: {why}")
    return Target(url, parts.scheme, host, port, addresses)


async def _resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        raise RefusedUrl(f"{host} does not resolve") from None
    addresses = []
    for _, _, _, _, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise RefusedUrl(f"{host} does not resolve")
    return tuple(addresses)
