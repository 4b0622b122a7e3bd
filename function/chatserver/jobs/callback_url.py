"""Who a job's callback may call: the URL's rules and its host's addresses (callback.py calls).

Only ``https`` URLs whose host resolves to public addresses; loopback, private, link-local,
multicast, reserved, shared and cloud metadata addresses are refused, also inside IPv6 wrappers
(``::ffff:10.0.0.1``, 6to4, NAT64), and a name with one such address among public ones is
refused whole. Checked when the job is created (POST /jobs), when an upload's metadata is read
(the URL alone, resolving nothing), and before every attempt (callback.py), which then connects
to the addresses just checked. ``CHATSERVER_CALLBACK_ALLOW_PRIVATE=true`` lifts the address
rules and allows http (local use and tests).
"""

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from ..core.settings import Settings
from .errors import CallbackNotConfigured, InvalidCallbackUrl

MAX_URL_CHARS = 2000
# Named in refusals: IMDS (IPv4 and the IPv6 endpoint of Nitro instances) and the ECS task
# metadata endpoint. The rules below refuse them anyway (link-local, unique local).
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name resolves to (socket.getaddrinfo's, in its order).
Resolver = Callable[[str, int], list[str]]


def address_problem(address: IPAddress) -> str | None:
    """Why a callback may not connect to ``address``; None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return address_problem(inner)  # the IPv4 address it reaches is what counts
    if address in _METADATA:
        return "a cloud metadata address"
    for name, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return f"{'an' if name[0] in 'aeiou' else 'a'} {name} address"
    return None if address.is_global else "not a public address"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool, field: str = "callback_url") -> SplitResult:
    """The URL's parts, or ``InvalidCallbackUrl`` saying what is wrong; resolves nothing."""

    def refuse(why: str) -> InvalidCallbackUrl:
        return InvalidCallbackUrl(url, why, field)

    if len(url) > MAX_URL_CHARS:
        raise refuse(f"is {len(url)} characters long, over {MAX_URL_CHARS}")
    if not url.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise refuse("contains spaces, control or non-ASCII characters (percent-encode them; xn-- hosts)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise refuse(f"is not a URL ({exc})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise refuse("is not an https URL")
    if not parts.hostname:
        raise refuse("has no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("carries user:password@ (put a token in the path or the query instead)")
    literal = _literal(parts.hostname)
    if literal is not None and not allow_private and (why := address_problem(literal)):
        raise refuse(f"is {why}")
    return parts


def resolve_host(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def checked_addresses(
    url: str, parts: SplitResult, *, allow_private: bool, resolver: Resolver, field: str = "callback_url"
) -> list[str]:
    """The addresses the URL's host resolves to, every one allowed; raises ``InvalidCallbackUrl``
    when any is not (a name with one private address among public ones is refused whole), and
    ``OSError`` when the name does not resolve."""
    addresses = resolver(parts.hostname or "", port_of(parts))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    if not allow_private:
        for address in addresses:
            literal = _literal(address)
            why = "not an IP address" if literal is None else address_problem(literal)
            if why:
                raise InvalidCallbackUrl(url, f"resolves to {address}, {why}", field)
    return addresses


def check_callback(url: str, settings: Settings, resolver: Resolver = resolve_host) -> None:
    """POST /jobs' check of a callback_url: a secret to sign with, a valid URL, a public host."""
    if settings.callback_secret is None:
        raise CallbackNotConfigured()
    allow = settings.callback_allow_private
    parts = check_url(url, allow_private=allow)
    try:
        checked_addresses(url, parts, allow_private=allow, resolver=resolver)
    except OSError as exc:
        raise InvalidCallbackUrl(url, f"has a host that does not resolve ({exc.strerror or exc})") from None
