"""A callback receiver for the job tests: a threaded http.server on 127.0.0.1 that records every
request (path, headers, raw body, arrival time) and answers as the test tells it."""

import contextlib
import http.server
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

# What the receiver does with each request, in order (then 200): a status code, "hang" (read the
# request, never answer), or "trickle" (answer one byte of the status line every 0.3 s).
Answer = int | str
HANG_LIMIT_S = 60.0  # a hanging handler gives up after this even if the test never stops it


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() when the body was read


@dataclass
class Receiver:
    url: str
    port: int
    received: list[Received] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout_s: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} callbacks arrived in {timeout_s} s")
            time.sleep(0.05)
        return list(self.received)


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            with receiver.lock:
                receiver.received.append(Received(self.path, headers, body, time.monotonic()))
                answer = receiver.answers.pop(0) if receiver.answers else 200
            if answer == "hang":
                receiver.stopping.wait(HANG_LIMIT_S)
                return
            if answer == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\n":
                    if receiver.stopping.wait(0.3):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return  # the sender gave up on us: what the test expects
                return
            self.send_response(int(answer))
            self.send_header("Content-Length", "2")
            if int(answer) in (429, 503):
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return  # the test asserts on what was received, not on access lines

    return Handler


@contextlib.contextmanager
def callback_receiver(
    answers: Sequence[Answer] = (), *, tls: ssl.SSLContext | None = None, host_name: str = "127.0.0.1"
) -> Iterator[Receiver]:
    """A receiver on a free 127.0.0.1 port for the ``with`` block; ``host_name`` is what its URL
    calls the host (``localhost`` for a certificate made out to that name)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.daemon_threads = True
    port = server.server_address[1]
    scheme = "https" if tls else "http"
    receiver = Receiver(f"{scheme}://{host_name}:{port}/hooks/job-done?token=t1", port, answers=list(answers))
    server.RequestHandlerClass = _handler(receiver)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
