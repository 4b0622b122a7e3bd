"""What every measurement shares: paths, the clips, per-target results, process-tree sampling."""

import json
import os
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from tests.support.corpus import Clip, load_manifest, wer

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "Clip", "ClipRun", "PeakRss", "TargetResult", "load_manifest", "vm_hwm", "wer"]

MB = 1024 * 1024


@dataclass
class ClipRun:
    name: str
    audio_s: float
    wall_s: float
    text: str
    wer: float
    cpu_s: float | None = None  # known where the call is timed in-process (c, d)


@dataclass
class TargetResult:
    key: str  # a, b, c, d, or a settings label
    label: str
    runs: list[ClipRun] = field(default_factory=list)
    cpu_s: float | None = None
    ready_s: float | None = None  # process start -> model loaded and able to answer
    cold_start_s: float | None = None  # process start -> first answer (the shortest clip)
    peak_rss_bytes: int | None = None
    notes: list[str] = field(default_factory=list)
    # The warm-up clip's latency as the first request of the process and as the second (a).
    first_request_s: float | None = None
    second_request_s: float | None = None

    @property
    def audio_s(self) -> float:
        return sum(r.audio_s for r in self.runs)

    @property
    def wall_s(self) -> float:
        return sum(r.wall_s for r in self.runs)

    @property
    def rtf(self) -> float:
        return self.wall_s / self.audio_s

    @property
    def cpu_per_audio_s(self) -> float | None:
        return None if self.cpu_s is None else self.cpu_s / self.audio_s

    @property
    def mean_wer(self) -> float:
        return statistics.fmean(r.wer for r in self.runs)

    def to_json(self) -> dict:
        return asdict(self) | {
            "rtf": self.rtf,
            "cpu_per_audio_s": self.cpu_per_audio_s,
            "mean_wer": self.mean_wer,
        }


def score(
    clips: Sequence[Clip],
    walls: Sequence[float],
    texts: Sequence[str],
    cpus: Sequence[float | None] | None = None,
) -> list[ClipRun]:
    return [
        ClipRun(c.path.name, c.duration, w, t, wer(c.reference, t), cpu)
        for c, w, t, cpu in zip(clips, walls, texts, cpus or [None] * len(clips), strict=True)
    ]


def restricted(result: TargetResult, names: Sequence[str], label: str) -> TargetResult:
    """The same measurements, on some of the clips only (CPU from the per-clip figures)."""
    runs = [r for r in result.runs if r.name in set(names)]
    cpus = [r.cpu_s for r in runs]
    return TargetResult(
        key=label,
        label=label,
        runs=runs,
        cpu_s=None if None in cpus else sum(c for c in cpus if c is not None),
        ready_s=result.ready_s,
        cold_start_s=result.cold_start_s,
        peak_rss_bytes=result.peak_rss_bytes,
        notes=[f"measured in {result.key}, on these clips"],
    )


def clips_json(clips: Sequence[Clip], path: Path) -> Path:
    path.write_text(json.dumps([{"path": str(c.path), "duration": c.duration} for c in clips]))
    return path


def vm_hwm(pid: int) -> int:
    """The kernel's peak resident set of one process (VmHWM), in bytes; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_cpu_s(process: psutil.Process) -> float:
    """CPU seconds of a process, its reaped children (FFmpeg) and its live descendants."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class PeakRss:
    """Samples the summed RSS of a process tree, so short-lived children (FFmpeg) count too."""

    def __init__(self, pid: int, interval_s: float = 0.05, include_root: bool = True) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.include_root = include_root
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                members = root.children(recursive=True)
                if self.include_root:
                    members.append(root)
            except psutil.NoSuchProcess:
                return
            for p in members:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval_s)


def wait_until(condition, timeout_s: float, interval_s: float = 0.02, what: str = "condition") -> float:
    """Poll ``condition`` until it is true; returns the time.time() it first was."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def service_env(overrides: dict[str, str], tmp_dir: Path) -> dict[str, str]:
    """The environment every service target runs with: the same settings, offline."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "function"), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "CHATSERVER_TMP_DIR": str(tmp_dir),
        **overrides,
    }
