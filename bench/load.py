"""The full load test: 16 closed-loop clients for 60 s, then throughput at 1 and at 4 clients.

Throughput is measured with the first clip alone (jfk.flac by default), so both runs count the
same work; it is answers per minute, from the start to the last answer, so requests still in
flight at the deadline count in full on both sides.

tests/api/test_load.py is the short version in the suite; both use tests/support/loadgen.py.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.loadgen import LoadResult, closed_loop

from .common import Clip
from .http_service import uvicorn


@dataclass
class LoadReport:
    burst: LoadResult
    one: LoadResult | None
    four: LoadResult | None
    baseline_rss: int
    after_rss: int
    left_in_tmp: list[str]
    admitted_after: int

    @property
    def rss_ratio(self) -> float:
        return self.after_rss / self.baseline_rss


def load_test(
    clips: Sequence[Clip],
    env: dict[str, str],
    workdir: Path,
    clients: int,
    seconds: float,
    throughput_seconds: float,
) -> LoadReport:
    audio_tmp, spool_tmp = workdir / "tmp", workdir / "spool"
    audio_tmp.mkdir(parents=True, exist_ok=True)
    spool_tmp.mkdir(parents=True, exist_ok=True)
    # Starlette spools uploads over 1 MB to the system temp dir: watch that one too.
    with uvicorn({**env, "TMPDIR": str(spool_tmp)}, workdir) as server:
        with httpx.Client(timeout=300) as http:
            for clip in clips:  # warm up: every clip once, then the baseline
                server.transcribe(http, clip)
        baseline = server.ps.memory_info().rss
        burst = closed_loop(server.url, clips, clients=clients, duration_s=seconds, timeout_s=300)
        time.sleep(2)  # let the last responses' buffers go
        after = server.ps.memory_info().rss
        admitted = httpx.get(f"{server.url}/health", timeout=10).json()["admitted"]
        left = sorted(str(p.relative_to(workdir)) for d in (audio_tmp, spool_tmp) for p in d.iterdir())
        one = four = None
        if throughput_seconds > 0:
            # One clip for both, so the two count the same unit of work whatever the mix.
            unit = [clips[0]]
            one = closed_loop(server.url, unit, clients=1, duration_s=throughput_seconds, timeout_s=300)
            four = closed_loop(server.url, unit, clients=4, duration_s=throughput_seconds, timeout_s=300)
    return LoadReport(burst, one, four, baseline, after, left, admitted)
