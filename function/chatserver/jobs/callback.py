"""Telling a client that its job is done: a signed POST to the job's ``callback_url``.

What is sent: ``application/json`` ``{"job_id", "status", "status_url", "error"?, "sent_at"}``
with ``X-ChatServer-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with
CHATSERVER_CALLBACK_SECRET>``; ``sent_at`` is each attempt's own time, so a receiver can refuse
old bodies (replays).

Where it may go: only ``https`` URLs whose host resolves to public addresses; loopback, private,
link-local, multicast, reserved and cloud metadata addresses are refused, also inside IPv6
wrappers (``::ffff:10.0.0.1``, 6to4, NAT64). The URL is checked when the job is created, when
an upload's metadata is read, and again before every attempt, and the connection then goes to
the address just checked (TLS still verifies the certificate for the host name): a name that
resolves to a public address at creation and to 169.254.169.254 later is never called.
``CHATSERVER_CALLBACK_ALLOW_PRIVATE=true`` lifts the address rules and allows http (local use
and tests).

How it is retried: up to ``callback_max_attempts`` on connection errors, timeouts, 408, 425,
429 and 5xx, waiting ``callback_backoff_s`` and twice as long after each (or the receiver's
Retry-After), all within ``callback_total_s`` and before the Lambda invocation ends. 3xx
(redirects are not followed: they could lead anywhere) and other 4xx answers end the delivery.
Delivery comes after the result is written and never fails the job: record.py records how it
went in the result document with a second conditional write.
"""

import hashlib
import hmac
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, Field

from .. import __version__
from ..core.errors import CallbackNotConfigured, InvalidCallbackUrl
from ..core.invocation import seconds_left
from ..core.settings import Settings
from .documents import CallbackDelivery, JobError, utc_now

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ChatServer-Signature"
MAX_URL_CHARS = 2000
# Named in refusals: IMDS (IPv4 and the IPv6 endpoint of Nitro instances) and the ECS task
# metadata endpoint. The rules below refuse them anyway (link-local, unique local).
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_RETRIED = {408, 425, 429}
# Left of the invocation for writing the delivery record after the last attempt.
_INVOCATION_MARGIN_S = 3.0
_MIN_ATTEMPT_S = 0.5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name resolves to (socket.getaddrinfo's, in its order).
Resolver = Callable[[str, int], list[str]]


class CallbackPayload(BaseModel):
    job_id: str
    status: Literal["completed", "failed"]
    status_url: str = Field(description="GET it for the result (an s3:// URI for jobs without a job id).")
    error: JobError | None = Field(default=None, exclude_if=lambda value: value is None)
    sent_at: datetime = Field(description="When this attempt was sent; every retry is signed anew.")


def sign(secret: str, body: bytes) -> str:
    """The X-ChatServer-Signature value of ``body``: what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def checked_addresses(
    url: str, parts: SplitResult, *, allow_private: bool, resolver: Resolver, field: str = "callback_url"
) -> list[str]:
    """The addresses the URL's host resolves to, every one allowed; raises ``InvalidCallbackUrl``
    when any is not (a name with one private address among public ones is refused whole), and
    ``OSError`` when the name does not resolve."""
    addresses = resolver(parts.hostname or "", _port(parts))
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


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the addresses that were checked (the first that answers), whatever the name
    resolves to by now; the Host header (and for https the SNI and certificate check) still use
    the name."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        failure: OSError | None = None
        for address in self.addresses:
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
                return
            except OSError as exc:
                failure = exc
        raise failure or OSError("no address to connect to")

    def abort(self) -> None:
        """From another thread: wake a blocked send or receive (a receiver that never answers)."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                return  # already closed: the attempt is over anyway


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def connect(self) -> None:
        super().connect()
        # The default context: system CAs, hostname checked against the URL's host.
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


class _Attempt(Exception):
    """One attempt's failure: ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.wait_s = wait_s


class CallbackSender:
    """Delivers one job's callback: signed, retried, bounded in time; never raises."""

    def __init__(self, settings: Settings, resolver: Resolver = resolve_host) -> None:
        self.settings = settings
        self.resolver = resolver

    def deliver(
        self,
        url: str,
        job_id: str,
        status: Literal["completed", "failed"],
        status_url: str,
        error: JobError | None,
    ) -> CallbackDelivery:
        settings = self.settings
        secret = settings.callback_secret
        if secret is None:
            return CallbackDelivery(last_error="not sent: the server has no CHATSERVER_CALLBACK_SECRET")
        started = time.monotonic()
        end = started + settings.callback_total_s
        if (left := seconds_left()) is not None:
            end = min(end, started + left - _INVOCATION_MARGIN_S)
        delivery = CallbackDelivery()
        wait = settings.callback_backoff_s
        while delivery.attempts < settings.callback_max_attempts:
            if end - time.monotonic() < _MIN_ATTEMPT_S:
                delivery.last_error = f"{delivery.last_error or 'not sent'} (no time left for an attempt)"
                break
            payload = CallbackPayload(
                job_id=job_id, status=status, status_url=status_url, error=error, sent_at=utc_now()
            )
            body = payload.model_dump_json().encode()
            try:
                self._attempt(url, body, sign(secret.get_secret_value(), body), end, delivery)
            except _Attempt as failed:
                delivery.last_error = str(failed)
                logger.warning("job %r: callback attempt %d failed: %s", job_id, delivery.attempts, failed)
                if not failed.retry or delivery.attempts >= settings.callback_max_attempts:
                    break
                pause = max(wait, failed.wait_s or 0.0)
                if time.monotonic() + pause + _MIN_ATTEMPT_S > end:
                    delivery.last_error += " (no time left for another attempt)"
                    break
                time.sleep(pause)
                wait *= 2
                continue
            delivery.delivered_at = utc_now()
            delivery.last_error = None
            break
        outcome = "delivered" if delivery.delivered_at else "not delivered"
        logger.info(
            "job %r: callback %s after %d attempt(s) in %.2f s",
            job_id,
            outcome,
            delivery.attempts,
            time.monotonic() - started,
            extra={"callback_attempts": delivery.attempts, "callback_delivered": bool(delivery.delivered_at)},
        )
        return delivery

    def _attempt(self, url: str, body: bytes, signature: str, end: float, delivery: CallbackDelivery) -> None:
        allow = self.settings.callback_allow_private
        try:
            parts = check_url(url, allow_private=allow)
            # Resolved and checked again now: the name may point elsewhere than at creation.
            addresses = checked_addresses(url, parts, allow_private=allow, resolver=self.resolver)
        except InvalidCallbackUrl as refused:
            raise _Attempt(f"refused: {refused.message}", retry=False) from None
        except OSError as exc:
            raise _Attempt(f"the host does not resolve ({exc})", retry=True) from None
        timeout = max(min(self.settings.callback_timeout_s, end - time.monotonic()), 0.1)
        https = parts.scheme.lower() == "https"
        kind = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
        connection = kind(parts.hostname or "", _port(parts), addresses, timeout)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature,
            "User-Agent": f"ChatServer/{__version__} (job callback)",
        }
        # Socket timeouts bound each read; the watchdog bounds the whole attempt, so a receiver
        # that trickles its answer a byte at a time cannot hold it either.
        watchdog = threading.Timer(timeout, connection.abort)
        watchdog.start()
        delivery.attempts += 1
        begun = time.monotonic()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            status, retry_after = response.status, response.getheader("Retry-After")
        except ssl.SSLCertVerificationError as exc:
            why = f"TLS certificate not valid for {parts.hostname}: {exc.verify_message}"
            raise _Attempt(why, retry=False) from None
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() - begun >= timeout - 0.05:
                raise _Attempt(f"no answer within {timeout:.1f} s", retry=True) from None
            raise _Attempt(f"{type(exc).__name__}: {exc}", retry=True) from None
        finally:
            watchdog.cancel()
            connection.close()
        if 200 <= status < 300:
            return
        retry = status in _RETRIED or status >= 500
        wait = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
        what = "retried" if retry else "not retried"
        if 300 <= status < 400:
            what = "redirects are not followed"
        raise _Attempt(f"HTTP {status} ({what})", retry=retry, wait_s=wait)
