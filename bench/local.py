"""(c) the engine floor and (d) the seed's pipeline, each in a fresh worker process."""

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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
