"""(a) the service over HTTP: ``uvicorn chatserver.main:app`` on 127.0.0.1, one request per clip."""

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from servers import free_port, stop_process_group

from .common import REPO, Clip, PeakRss, TargetResult, score, service_env, tree_cpu_s, vm_hwm


@dataclass
class Uvicorn:
    url: str
    process: subprocess.Popen
    ps: psutil.Process
    started_at: float  # time.time() just before the process was started
    ready_at: float  # first /health 200
    log: Path

    def transcribe(self, http: httpx.Client, clip: Clip, language: str | None = None) -> tuple[float, str]:
        started = time.perf_counter()
        response = http.post(
            f"{self.url}/transcribe",
            files={"file": (clip.path.name, clip.path.read_bytes())},
            data={"language": language} if language else None,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{clip.path.name}: HTTP {response.status_code} {response.text[:300]}")
        return elapsed, response.json()["transcript"]


@contextlib.contextmanager
def uvicorn(env: dict[str, str], workdir: Path, start_timeout_s: float = 120) -> Iterator[Uvicorn]:
    """A server on a free loopback port; polled every 20 ms so the cold start is measured finely.

    (tests/servers.py has the suite's launcher; it polls every 200 ms, too coarse to time.)
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "chatserver.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    started = time.time()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=service_env(env, workdir / "tmp"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + start_timeout_s
        with httpx.Client(timeout=5) as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"uvicorn exited {process.returncode}:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"{url}/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"uvicorn not ready in {start_timeout_s} s")
                time.sleep(0.02)
        yield Uvicorn(url, process, psutil.Process(process.pid), started, time.time(), log)
    finally:
        stop_process_group(process)


def http_service(clips: Sequence[Clip], warmup: Clip, env: dict[str, str], workdir: Path) -> TargetResult:
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    with uvicorn(env, workdir) as server, PeakRss(server.process.pid) as rss:
        with httpx.Client(timeout=600) as http:
            server.transcribe(http, warmup)
            first_answer = time.time()
            cpu_before = tree_cpu_s(server.ps)
            walls, texts = [], []
            for clip in clips:
                wall, text = server.transcribe(http, clip)
                walls.append(wall)
                texts.append(text)
            cpu = tree_cpu_s(server.ps) - cpu_before
        peak = max(rss.peak, vm_hwm(server.process.pid))
    return TargetResult(
        key="a",
        label="(a) service over HTTP (uvicorn)",
        runs=score(clips, walls, texts),
        cpu_s=cpu,
        ready_s=server.ready_at - server.started_at,
        cold_start_s=first_answer - server.started_at,
        peak_rss_bytes=peak,
    )
