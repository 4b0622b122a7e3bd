"""Telling a client that its job is done: a signed POST to the job's ``callback_url``.

What is sent: ``application/json`` ``{"job_id", "status", "status_url", "error"?, "sent_at"}``
with ``X-ChatServer-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with
CHATSERVER_CALLBACK_SECRET>``; ``sent_at`` is each attempt's own time, so a receiver can refuse
old bodies (replays).

Where it may go (callback_url.py): checked again before every attempt, and the connection then
goes to the addresses just checked (TLS still verifies the certificate for the host name), so a
name that resolves to a public address at creation and to 169.254.169.254 later is never called.

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
import logging
import socket
import ssl
import threading
import time
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .. import __version__
from ..core.invocation import seconds_left
from ..core.settings import Settings
from .callback_url import Resolver, check_url, checked_addresses, port_of, resolve_host
from .documents import CallbackDelivery, JobError, utc_now
from .errors import InvalidCallbackUrl

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ChatServer-Signature"
_RETRIED = {408, 425, 429}
# Left of the invocation for writing the delivery record after the last attempt.
_INVOCATION_MARGIN_S = 3.0
_MIN_ATTEMPT_S = 0.5


class CallbackPayload(BaseModel):
    job_id: str
    status: Literal["completed", "failed"]
    status_url: str = Field(description="GET it for the result (an s3:// URI for jobs without a job id).")
    error: JobError | None = Field(default=None, exclude_if=lambda value: value is None)
    sent_at: datetime = Field(description="When this attempt was sent; every retry is signed anew.")


def sign(secret: str, body: bytes) -> str:
    """The X-ChatServer-Signature value of ``body``: what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the addresses that were checked (the first that answers), whatever the name
    resolves to by now; the Host header (and for https the SNI and certificate check) still use
    the name."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses
        self.deadline = time.monotonic() + timeout

    def connect(self) -> None:
        failure: OSError | None = None
        for address in self.addresses:
            left = self.deadline - time.monotonic()
            if left <= 0:
                break  # the attempt's time is up: no next address
            try:
                self.sock = socket.create_connection((address, self.port), min(self.timeout, left))
                return
            except OSError as exc:
                failure = exc
        raise failure or TimeoutError("no address answered in time")

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
        connection = kind(parts.hostname or "", port_of(parts), addresses, timeout)
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
