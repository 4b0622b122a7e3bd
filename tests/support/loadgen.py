"""Closed-loop HTTP load: N clients, each sending its next request as soon as it has an answer.

Shared by tests/api/test_load.py (short) and the benchmark (bench/load.py, full), so both judge
"nothing is lost" the same way. Loopback only; bounded in clients and time.
"""

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tests.support.corpus import Clip


@dataclass(frozen=True)
class Outcome:
    client: int
    clip: str
    audio_s: float
    status: int | None  # None: no HTTP answer at all
    error: str | None  # the transport error's class name (ConnectError, ReadTimeout...)
    retry_after: str | None
    elapsed_s: float
    finished_at: float  # time.monotonic()
    text: str | None


@dataclass
class LoadResult:
    clients: int
    duration_s: float
    started_at: float
    outcomes: list[Outcome] = field(default_factory=list)
    health_latencies_s: list[float] = field(default_factory=list)
    health_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200]

    @property
    def busy(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 503]

    @property
    def lost(self) -> list[Outcome]:
        """Anything that is neither a 200 nor a 503 that says when to come back."""
        return [
            o
            for o in self.outcomes
            if not (o.status == 200 or (o.status == 503 and o.retry_after and o.retry_after.isdigit()))
        ]

    @property
    def elapsed_s(self) -> float:
        """From the start to the last answer: requests in flight at the deadline count in full."""
        return max((o.finished_at for o in self.outcomes), default=self.started_at) - self.started_at

    def audio_per_second(self) -> float:
        """Seconds of audio transcribed per wall second."""
        return sum(o.audio_s for o in self.ok) / self.elapsed_s if self.elapsed_s else 0.0

    def requests_per_minute(self) -> float:
        return 60 * len(self.ok) / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        statuses: dict[str, int] = {}
        for o in self.outcomes:
            key = str(o.status) if o.status is not None else (o.error or "error")
            statuses[key] = statuses.get(key, 0) + 1
        worst_health = max(self.health_latencies_s, default=0.0)
        return (
            f"{self.clients} clients x {self.duration_s:g} s: {len(self.outcomes)} requests {statuses}, "
            f"{self.audio_per_second():.2f} audio s/s, /health worst {worst_health * 1000:.0f} ms"
        )


def closed_loop(
    base_url: str,
    clips: Sequence[Clip],
    clients: int,
    duration_s: float,
    *,
    timeout_s: float = 120,
    honor_retry_after: bool = True,
    health_interval_s: float = 0.25,
) -> LoadResult:
    """Run ``clients`` closed-loop clients for ``duration_s``, then wait for their last answers.

    A client told 503 waits Retry-After (cut short at the deadline) before its next request, as
    the API asks clients to; a request in flight at the deadline is waited for (up to
    ``timeout_s``), so every request sent is accounted for.
    """
    bodies = {c.path.name: c.path.read_bytes() for c in clips}
    result = LoadResult(clients, duration_s, time.monotonic())
    deadline = result.started_at + duration_s
    lock = threading.Lock()
    stop_health = threading.Event()

    def client(number: int) -> None:
        with httpx.Client(base_url=base_url, timeout=timeout_s) as http:
            sent = 0
            while time.monotonic() < deadline:
                clip = clips[(number + sent) % len(clips)]
                sent += 1
                started = time.monotonic()
                status = error = retry_after = text = None
                try:
                    response = http.post(
                        "/transcribe", files={"file": (clip.path.name, bodies[clip.path.name])}
                    )
                    status = response.status_code
                    retry_after = response.headers.get("retry-after")
                    if status == 200:
                        text = response.json().get("transcript")
                except httpx.TransportError as exc:
                    error = type(exc).__name__
                finished = time.monotonic()
                with lock:
                    result.outcomes.append(
                        Outcome(
                            number,
                            clip.path.name,
                            clip.duration,
                            status,
                            error,
                            retry_after,
                            finished - started,
                            finished,
                            text,
                        )
                    )
                if status == 503 and honor_retry_after and retry_after and retry_after.isdigit():
                    time.sleep(max(0.0, min(float(retry_after), deadline - time.monotonic())))

    def health() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while not stop_health.is_set():
                started = time.monotonic()
                try:
                    if http.get("/health").status_code != 200:
                        result.health_failures.append("status")
                except httpx.TransportError as exc:
                    result.health_failures.append(type(exc).__name__)
                result.health_latencies_s.append(time.monotonic() - started)
                stop_health.wait(health_interval_s)

    poller = threading.Thread(target=health, name="load-health", daemon=True)
    workers = [
        threading.Thread(target=client, args=(n,), name=f"load-{n}", daemon=True) for n in range(clients)
    ]
    poller.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        # Bounded: the deadline plus one request's time limit plus a margin.
        worker.join(max(0.0, deadline - time.monotonic()) + timeout_s + 30)
    stop_health.set()
    poller.join(35)
    hung = [w.name for w in workers if w.is_alive()]
    if hung:
        raise TimeoutError(f"load clients still running past every time limit: {hung}")
    return result
