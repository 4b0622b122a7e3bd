"""(a) the service over HTTP: ``python -m chatserver`` on 127.0.0.1, one request per clip."""

import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.support.servers import uvicorn_server

from .common import Clip, PeakRss, TargetResult, score, service_env, tree_cpu_s, vm_hwm


@dataclass
class Uvicorn:
    url: str
    process: subprocess.Popen
    ps: psutil.Process
    started_at: float  # time.time() just before the process was started
    ready_at: float  # first /health 200
    log: Path

    def transcribe(self, http: httpx.Client, clip: Clip, language: str | None = None) -> tuple[float, str]:
        elapsed, response = self.post(http, clip, language)
        return elapsed, response.json()["transcript"]

    def post(
        self, http: httpx.Client, clip: Clip, language: str | None = None
    ) -> tuple[float, httpx.Response]:
        """POST /transcribe timed from the client's side (upload and answer included); a 200."""
        started = time.perf_counter()
        response = http.post(
            f"{self.url}/transcribe",
            files={"file": (clip.path.name, clip.path.read_bytes())},
            data={"language": language} if language else None,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{clip.path.name}: HTTP {response.status_code} {response.text[:300]}")
        return elapsed, response


@contextlib.contextmanager
def uvicorn(env: dict[str, str], workdir: Path, start_timeout_s: float = 120) -> Iterator[Uvicorn]:
    """The suite's launcher, polled every 20 ms so that the cold start is timed finely."""
    workdir.mkdir(parents=True, exist_ok=True)
    service = service_env(env, workdir / "tmp")
    with uvicorn_server(service, workdir / "uvicorn.log", start_timeout_s, poll_s=0.02) as server:
        yield Uvicorn(
            server.url,
            server.process,
            psutil.Process(server.process.pid),
            server.started_at,
            server.ready_at,
            server.log,
        )


def http_service(clips: Sequence[Clip], warmup: Clip, env: dict[str, str], workdir: Path) -> TargetResult:
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    with uvicorn(env, workdir) as server, PeakRss(server.process.pid) as rss:
        with httpx.Client(timeout=600) as http:
            first_s, _ = server.transcribe(http, warmup)
            first_answer = time.time()
            # The same request again: whatever the first paid once shows as the difference.
            second_s, _ = server.transcribe(http, warmup)
            cpu_before = tree_cpu_s(server.ps)
            walls, texts, cpus = [], [], []
            for clip in clips:
                clip_cpu = tree_cpu_s(server.ps)
                wall, text = server.transcribe(http, clip)
                cpus.append(tree_cpu_s(server.ps) - clip_cpu)
                walls.append(wall)
                texts.append(text)
            cpu = tree_cpu_s(server.ps) - cpu_before
        peak = max(rss.peak, vm_hwm(server.process.pid))
    return TargetResult(
        key="a",
        label="(a) service over HTTP (uvicorn)",
        runs=score(clips, walls, texts, cpus),
        cpu_s=cpu,
        first_request_s=first_s,
        second_request_s=second_s,
        ready_s=server.ready_at - server.started_at,
        cold_start_s=first_answer - server.started_at,
        peak_rss_bytes=peak,
    )
