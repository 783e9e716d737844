"""Where a webhook may deliver: every spelling of a private address is refused, a
public one is not, and WEBHOOK_ALLOWED_NETWORKS is the one way around."""

import ipaddress

import pytest

from api.webhooks.addresses import RefusedUrl, allowed_networks, checked, literal, refusal

# Each a host a client would connect to a non-public address through.
REFUSED = [
    "127.0.0.1",
    "127.1",  # the two-part form: 127.0.0.1
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "0x7f.1",
    "0",  # 0.0.0.0
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # cloud metadata
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[fe80::1%25eth0]",  # with a zone
    "[ff02::1]",
    "[2001:db8::1]",  # documentation
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]"]


@pytest.mark.parametrize("host", REFUSED)
async def test_every_spelling_of_a_private_address_is_refused(host: str) -> None:
    with pytest.raises(RefusedUrl, match="not a public address"):
        await checked(f"https://{host}/hook")


@pytest.mark.parametrize("host", PUBLIC)
async def test_a_public_address_is_taken_and_connected_to_as_checked(host: str) -> None:
    target = await checked(f"https://{host}:8443/hook?x=1")
    assert target.port == 8443
    assert [str(a) for a in target.addresses] == [str(literal(host))]


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    with pytest.raises(RefusedUrl, match="loopback"):
        await checked("http://localhost:9000/hook")
    with pytest.raises(RefusedUrl, match="does not resolve"):
        await checked("http://no-such-host.invalid/hook")


async def test_allowed_networks_are_the_one_way_around() -> None:
    allowed = allowed_networks(" 127.0.0.0/8, ::1 ,")
    assert [str(n) for n in allowed] == ["127.0.0.0/8", "::1/128"]
    for host in ("127.0.0.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]", "localhost"):
        target = await checked(f"http://{host}:9000/hook", allowed)
        assert all(refusal(a, allowed) is None for a in target.addresses)
    with pytest.raises(RefusedUrl):
        await checked("http://10.0.0.1/hook", allowed)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https://user:secret@example.com/hook", "credentials"),
        ("https:///hook", "needs a host"),
        ("https://example.com:99999/hook", "not a valid URL"),
        ("https://example.com/hook#part", "fragment"),
        ("javascript:alert(1)", "http or https"),
    ],
)
async def test_what_cannot_be_a_webhook_url(url: str, why: str) -> None:
    with pytest.raises(RefusedUrl, match=why):
        await checked(url)


def test_refusal_says_why_and_names_the_carried_address() -> None:
    mapped = ipaddress.ip_address("::ffff:10.0.0.1")
    assert refusal(mapped) == "::ffff:a00:1 carries 10.0.0.1: 10.0.0.1 is a private address"
    assert refusal(ipaddress.ip_address("8.8.8.8")) is None
