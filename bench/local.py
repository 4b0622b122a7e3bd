"""(c) the engine floor and (d) the seed's pipeline, each in a fresh worker process."""

import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tests.support.servers import stop_process_group

from .common import REPO, Clip, PeakRss, TargetResult, clips_json, score, service_env


def run_worker(
    key: str,
    label: str,
    mode: str,
    clips: Sequence[Clip],
    warmup: Clip,
    env: dict[str, str],
    workdir: Path,
    extra_args: Sequence[str] = (),
    timeout_s: float = 1800,
) -> TargetResult:
    """Run bench/worker.py once: ``warmup`` first (the cold start), then ``clips`` timed."""
    workdir.mkdir(parents=True, exist_ok=True)
    listing = clips_json([warmup, *clips], workdir / "clips.json")
    out = workdir / "result.json"
    command = [sys.executable, "-m", "bench.worker", mode, "--clips", str(listing), "--out", str(out)]
    started = time.time()
    with (workdir / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, *extra_args],
            cwd=REPO,
            env=service_env(env, workdir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with PeakRss(process.pid) as rss:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
    if process.returncode != 0:
        tail = (workdir / "worker.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{mode} worker failed ({process.returncode}):\n{tail}")
    data = json.loads(out.read_text())
    runs = data["runs"]
    return TargetResult(
        key=key,
        label=label,
        runs=score(clips, [r["wall_s"] for r in runs], [r["text"] for r in runs], [r["cpu_s"] for r in runs]),
        cpu_s=sum(r["cpu_s"] for r in runs),
        ready_s=data["loaded_at"] - started,
        cold_start_s=data["first_answer_at"] - started,
        peak_rss_bytes=max(rss.peak, data["vm_hwm"]),
        notes=[data["note"]] if data.get("note") else [],
    )


def engine_floor(
    clips: Sequence[Clip], warmup: Clip, env: dict[str, str], workdir: Path, key: str = "c", label: str = ""
) -> TargetResult:
    return run_worker(
        key, label or "(c) bare engine: faster-whisper defaults", "floor", clips, warmup, env, workdir
    )


def seed_pipeline(
    clips: Sequence[Clip],
    warmup: Clip,
    env: dict[str, str],
    workdir: Path,
    checkpoint: Path,
    beam_size: int | None,
) -> TargetResult:
    args = ["--checkpoint", str(checkpoint)]
    if beam_size is not None:
        args += ["--beam-size", str(beam_size)]
    return run_worker(
        "d", "(d) seed: openai-whisper fp32, FFmpeg to .wav", "seed", clips, warmup, env, workdir, args
    )


class Served:
    """A ``bench.worker --serve`` process that takes clips one at a time (bench/notes.py).

    Started once and kept, so that its runs can alternate with other targets' on the same
    clips; timed inside the worker, as run_worker's are. Stopped by its process group.
    """

    def __init__(
        self,
        mode: str,
        env: dict[str, str],
        workdir: Path,
        extra_args: Sequence[str] = (),
        timeout_s: float = 600,
    ) -> None:
        self.mode, self.timeout_s = mode, timeout_s
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "worker.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.worker", mode, "--serve", *extra_args],
                cwd=REPO,
                env=service_env(env, workdir),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        self._in: IO[str] = self.process.stdin  # type: ignore[assignment]
        self._out: IO[str] = self.process.stdout  # type: ignore[assignment]
        self.note = ""

    def __enter__(self) -> "Served":
        try:
            self.note = self._answer()["note"]
        except BaseException:
            stop_process_group(self.process)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._in.close()  # the worker's loop ends at the end of its input
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            stop_process_group(self.process)

    def _answer(self) -> dict:
        ready, _, _ = select.select([self._out], [], [], self.timeout_s)
        line = self._out.readline() if ready else ""
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:]
            why = f"no answer within {self.timeout_s:g} s" if not ready else "it exited"
            raise RuntimeError(f"{self.mode} worker: {why}:\n{tail}")
        return json.loads(line)

    def transcribe(self, path: Path, language: str | None) -> tuple[float, float, str]:
        """Wall and CPU seconds of the worker's own call, and the text."""
        self._in.write(json.dumps({"path": str(path), "language": language}) + "\n")
        self._in.flush()
        answer = self._answer()
        return answer["wall_s"], answer["cpu_s"], answer["text"]
