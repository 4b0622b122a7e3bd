"""The Lambda handler over HTTP, as API Gateway's REST API would, without Docker.

    .venv/bin/python infra/lambda_local.py --http 3000            # http://127.0.0.1:3000/Prod/
    curl -F file=@note.webm http://127.0.0.1:3000/Prod/transcribe

What ``sam local start-api`` does, without a container: each HTTP request on 127.0.0.1
becomes an API Gateway REST (payload 1.0) proxy event, the handler runs under the real
Runtime Interface Emulator (``emulator.Emulator``: aws-lambda-rie + awslambdaric, the
model loaded once at init), and the proxy response is written back. As API Gateway does:

- the stage is the first path segment (``/Prod/transcribe``); ``requestContext.path`` and
  ``requestContext.stage`` carry it, the event's ``path`` does not; other paths get 403;
- bodies of the template's BinaryMediaTypes arrive base64-encoded, others as text;
- ``headers`` keep the last value of each header, ``multiValueHeaders`` all of them (the same
  for the query string);
- a response's ``headers`` and ``multiValueHeaders`` are merged, a base64 body is decoded;
- a body over 10 MB, or an event over Lambda's 6 MB invocation limit, is refused with 413
  before the function runs; a function error or a malformed response is a 502.

Every path is proxied (``/{proxy+}``): the app's own 404 answers a route the template lacks.
One execution environment serves one event at a time, so requests are handled one by one.
API Gateway's 29 s integration timeout is not applied: the function's own timeout is.
"""

import base64
import contextlib
import fnmatch
import http.client
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from .emulator import Emulator
from .runtimes import free_port

logger = logging.getLogger("lambda_http")

# template.yaml's Api.BinaryMediaTypes ("~1" is "/" there); tests/aws_lambda/test_lambda_http.py checks
# that the two lists agree.
BINARY_MEDIA_TYPES = ("multipart/form-data", "audio/*", "application/octet-stream")
# API Gateway refuses larger request bodies; Lambda refuses larger synchronous invocation
# payloads (the whole event JSON, so a base64 body of about 4.4 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_EVENT_BYTES = 6 * 1024 * 1024
# Hop-by-hop headers: this server frames its own responses.
_FRAMING = {"content-length", "transfer-encoding", "connection", "keep-alive"}


# --- HTTP request -> API Gateway event ------------------------------------------------------
def is_binary(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return bool(media_type) and any(fnmatch.fnmatch(media_type, pattern) for pattern in BINARY_MEDIA_TYPES)


def _single_and_multi(
    pairs: list[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """API Gateway's two views of repeated names: the last value, and every value in order."""
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi.items()}, multi


def rest_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    stage: str | None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any] | None:
    """The REST API proxy event for one request, or None when ``target`` is outside the stage.

    ``target`` is the request line's path and query as sent; the event's ``path`` is decoded
    and stage-less, ``requestContext.path`` is what the client sent before the query.
    """
    split = urlsplit(target)
    client_path = split.path or "/"
    path = unquote(client_path)
    if stage is not None:
        prefix = f"/{stage}"
        if path != prefix and not path.startswith(f"{prefix}/"):
            return None
        path = path[len(prefix) :] or "/"
    header_map, multi_headers = _single_and_multi(headers)
    query, multi_query = _single_and_multi(parse_qsl(split.query, keep_blank_values=True))
    content_type = next((v for k, v in reversed(headers) if k.lower() == "content-type"), None)
    binary = is_binary(content_type)
    if not body:
        event_body = None
    elif binary:
        event_body = base64.b64encode(body).decode("ascii")
    else:
        event_body = body.decode("utf-8", errors="replace")
    now = datetime.now(UTC)
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), "")
    host = next((v for k, v in headers if k.lower() == "host"), "127.0.0.1")
    resource = "/" if path == "/" else "/{proxy+}"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": header_map,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": None if path == "/" else {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "httpMethod": method,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "path": client_path,
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "resourceId": "local",
            "resourcePath": resource,
            "stage": stage or "$default",
        },
        "body": event_body,
        "isBase64Encoded": binary and bool(body),
    }


# --- proxy response -> HTTP response --------------------------------------------------------
def response_parts(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a proxy response; ValueError when it is not one.

    As API Gateway: a name in ``multiValueHeaders`` takes its values from there only, the
    other names of ``headers`` are added.
    """
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise ValueError(f"not a proxy response: {str(result)[:500]}")
    multi = result.get("multiValueHeaders") or {}
    headers = [(name, str(value)) for name, values in multi.items() for value in values]
    taken = {name.lower() for name in multi}
    headers += [(n, str(v)) for n, v in (result.get("headers") or {}).items() if n.lower() not in taken]
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return result["statusCode"], [(n, v) for n, v in headers if n.lower() not in _FRAMING], raw


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response below has a Content-Length
    server: "_Server"

    def _serve(self) -> None:
        started = time.perf_counter()
        status = self._proxy()
        logger.info("%s %s -> %d in %.2f s", self.command, self.path, status, time.perf_counter() - started)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes | None:
        """The request body, or None once it is known to be over MAX_BODY_BYTES."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, size = [], 0
            while (length := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                size += length
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(length))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _proxy(self) -> int:
        body = self._read_body()
        if body is None:
            self.close_connection = True  # the rest of the body is never read
            return self._gateway_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Too Long")
        event = rest_event(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            stage=self.server.stage,
            source_ip=self.client_address[0],
        )
        if event is None:
            # What API Gateway answers for a path outside any deployed stage.
            return self._gateway_error(HTTPStatus.FORBIDDEN, "Forbidden")
        payload = json.dumps(event)
        if len(payload) > MAX_EVENT_BYTES:
            return self._gateway_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Too Long")
        try:
            with self.server.invoke_lock:
                result = self.server.emulator.invoke(event)
            status, headers, raw = response_parts(result)
        # The emulator is gone or cut the answer short, or the function returned no proxy response.
        except (OSError, http.client.HTTPException, ValueError) as error:
            logger.error("%s %s: no proxy response from the function: %s", self.command, self.path, error)
            return self._gateway_error(HTTPStatus.BAD_GATEWAY, "Internal server error")
        self._write(status, headers, raw, event["requestContext"]["requestId"])
        return status

    def _gateway_error(self, status: HTTPStatus, message: str) -> int:
        # API Gateway's own errors have this body, not the app's error shape.
        body = json.dumps({"message": message}).encode()
        self._write(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", status.phrase)], body)
        return status

    def _write(self, status: int, headers: list[tuple[str, str]], body: bytes, request_id: str = "") -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("x-amzn-RequestId", request_id or str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # _serve logs one line per request, with its time; http.server's own lines go to stderr.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, emulator: Emulator, stage: str | None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.emulator = emulator
        self.stage = stage
        self.invoke_lock = threading.Lock()


@contextlib.contextmanager
def lambda_http_server(
    *,
    stage: str | None = "Prod",
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log: Path | None = None,
    timeout_s: int = 300,
) -> Iterator[str]:
    """The handler behind API Gateway on 127.0.0.1; yields the base URL, stage included.

    ``env`` is added to this process's environment for the function (CHATSERVER_*, AWS_*);
    ``log`` receives the emulator's and the function's output. Stopped on exit, by PID.
    """
    server = _Server(port or free_port(), Emulator(env=env, log=log, timeout_s=timeout_s), stage)
    thread = threading.Thread(target=server.serve_forever, name="lambda-http", daemon=True)
    with server.emulator:
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}" + (f"/{stage}" if stage else "")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


def serve(port: int, stage: str | None, timeout_s: int = 300) -> int:
    """Serve until Ctrl-C (lambda_local.py --http)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with lambda_http_server(stage=stage or None, port=port, timeout_s=timeout_s) as url:
        sys.stdout.write(f"API Gateway (REST) on {url}/ (Ctrl-C stops it), e.g.\n")
        sys.stdout.write(f"  curl -F file=@note.webm {url}/transcribe\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
