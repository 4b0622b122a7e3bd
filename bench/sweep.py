"""The settings that trade speed against accuracy, each measured on the engine floor.

Beam 1 vs 5, int8 vs float32, VAD on vs off and 1 thread vs every core: each run is a fresh
worker process with those CHATSERVER_* settings, on the same clips.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .common import Clip, TargetResult
from .local import engine_floor

# A configuration may be this much worse in mean WER than the most accurate one and still
# count as "as accurate": below that, one word in a short clip decides.
WER_TOLERANCE = 0.01
# Speed differences under this fraction are within run-to-run noise on a shared machine.
SPEED_NOISE = 0.05
# A chat user reads one transcript, not a mean: a configuration that makes any recording this
# much worse than the current defaults do is out, however good its mean.
CLIP_REGRESSION = 0.10


@dataclass(frozen=True)
class Config:
    beam_size: int
    compute_type: str
    vad_filter: bool
    cpu_threads: int

    @property
    def label(self) -> str:
        vad = "VAD on" if self.vad_filter else "VAD off"
        return f"beam {self.beam_size}, {self.compute_type}, {vad}, {self.cpu_threads} thread(s)"

    def env(self) -> dict[str, str]:
        return {
            "CHATSERVER_BEAM_SIZE": str(self.beam_size),
            "CHATSERVER_COMPUTE_TYPE": self.compute_type,
            "CHATSERVER_VAD_FILTER": str(self.vad_filter).lower(),
            "CHATSERVER_CPU_THREADS": str(self.cpu_threads),
        }


def configs(defaults: Config) -> list[Config]:
    """The current defaults, then each of the four settings changed on its own."""
    cores = len(os.sched_getaffinity(0))
    return [
        defaults,
        replace(defaults, beam_size=1 if defaults.beam_size > 1 else 5),
        replace(defaults, compute_type="float32" if defaults.compute_type != "float32" else "int8"),
        replace(defaults, vad_filter=not defaults.vad_filter),
        replace(defaults, cpu_threads=1 if defaults.cpu_threads > 1 else max(cores, 2)),
    ]


@dataclass
class SweepRow:
    config: Config
    result: TargetResult


def sweep(
    clips: Sequence[Clip],
    warmup: Clip,
    env: dict[str, str],
    workdir: Path,
    chosen: Sequence[Config],
    measured: dict[str, TargetResult] | None = None,
) -> list[SweepRow]:
    """One row per configuration; ``measured`` (label -> a floor run on these clips) is reused."""
    rows = []
    for index, config in enumerate(chosen):
        if measured and config.label in measured:
            rows.append(SweepRow(config, measured[config.label]))
            continue
        result = engine_floor(
            clips,
            warmup,
            {**env, **config.env()},
            workdir / f"config-{index}",
            key=config.label,
            label=config.label,
        )
        rows.append(SweepRow(config, result))
    return rows


def worst_regression(row: SweepRow, reference: SweepRow) -> float:
    """How much worse the WER of the worst-hit recording is than with ``reference``."""
    before = {r.name: r.wer for r in reference.result.runs}
    return max((r.wer - before[r.name] for r in row.result.runs if r.name in before), default=0.0)


def recommend(rows: Sequence[SweepRow], current: str) -> SweepRow:
    """The fastest configuration whose mean WER is within WER_TOLERANCE of the most accurate.

    The current defaults (by label) keep their place unless that one is faster by more than
    SPEED_NOISE (a default should not flip on noise), and a configuration that makes any one
    recording CLIP_REGRESSION worse than the defaults do is not considered.
    """
    defaults = next((r for r in rows if r.config.label == current), None)
    if defaults is not None:
        rows = [r for r in rows if worst_regression(r, defaults) <= CLIP_REGRESSION]
    best_wer = min(r.result.mean_wer for r in rows)
    accurate = [r for r in rows if r.result.mean_wer <= best_wer + WER_TOLERANCE]
    fastest = min(accurate, key=lambda r: r.result.rtf)
    for row in accurate:
        if row.config.label == current and row.result.rtf <= fastest.result.rtf * (1 + SPEED_NOISE):
            return row
    return fastest
