"""RSS of the HTTP service over many sequential requests: growth would be a leak."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .common import Clip
from .http_service import uvicorn


@dataclass
class RssCurve:
    clip: str
    early: int  # the request count of the first checkpoint
    language: str = ""
    rss_after: dict[int, int] = field(default_factory=dict)  # requests served -> RSS bytes
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return max(self.rss_after)

    @property
    def growth(self) -> float:
        """RSS after the last request over RSS after the early checkpoint."""
        return self.rss_after[self.total] / self.rss_after[self.early]


def rss_over_requests(
    clip: Clip, env: dict[str, str], workdir: Path, total: int, early: int = 20
) -> RssCurve:
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    curve = RssCurve(clip.path.name, early, clip.language)
    started = time.monotonic()
    with uvicorn(env, workdir) as server, httpx.Client(timeout=300) as http:
        for served in range(1, total + 1):
            # The language is given: detection would encode the first 30 s window once more,
            # a third of a short request's time, and it is not what a leak would hide in.
            server.transcribe(http, clip, language=clip.language)
            curve.rss_after[served] = server.ps.memory_info().rss
    curve.seconds = time.monotonic() - started
    return curve
