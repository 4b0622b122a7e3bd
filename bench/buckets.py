"""Results per bucket of duration, the long recordings, and issue 9's targets on them."""

import math
from collections.abc import Sequence

import jiwer

from tests.support.corpus import normalise

from .checks import Check
from .common import MB, ClipRun, TargetResult
from .joined import is_joined

BUCKETS = (
    ("under 5 s", 0.0, 5.0),
    ("5-15 s", 5.0, 15.0),
    ("15-30 s", 15.0, 30.0),
    ("over 30 s", 30.0, math.inf),
)
SHORT_S = 15.0  # the voice-note targets hold on clips under this
FASTER_THAN_FLOOR = 2.5  # (c) wall over (a), clips under 15 s
FASTER_THAN_SEED = 3.0  # (d) wall over (a), clips under 15 s
LESS_CPU_THAN_SEED = 4.0  # (d) CPU over (a), clips under 15 s
LONG_WER_MARGIN = 0.03  # a joined recording against its clips one by one
# The first request against the second (same clip): within 10%, plus 50 ms of timer noise.
FIRST_REQUEST_RATIO, FIRST_REQUEST_SLACK_S = 1.10, 0.05


PEAK_RSS_BYTES = 600 * MB


def peak_checks(peaks: dict[str, int]) -> list[Check]:
    return [
        Check(
            peak <= PEAK_RSS_BYTES,
            f"peak RSS of the service, {name}: {peak / MB:.0f} MB (target ≤ {PEAK_RSS_BYTES / MB:.0f} MB)",
        )
        for name, peak in peaks.items()
    ]


def bucket_of(seconds: float) -> str:
    return next(name for name, low, high in BUCKETS if low <= seconds < high)


def corpus_wer(runs: Sequence[ClipRun], references: dict[str, str]) -> float:
    """All edits over all reference words (a long clip weighs by its words, unlike a mean)."""
    if not runs:
        return math.nan
    return jiwer.wer(
        [normalise(references[r.name]) for r in runs], [normalise(r.text) or "<empty>" for r in runs]
    )


def _cpu(runs: Sequence[ClipRun]) -> float | None:
    values = [r.cpu_s for r in runs]
    return None if None in values else sum(v for v in values if v is not None)


def table(results: dict[str, TargetResult], references: dict[str, str], peaks: dict[str, int]) -> list[str]:
    lines = [
        "| duration | target | clips | audio s | RTF | CPU s / audio s | corpus WER | peak RSS (service) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in BUCKETS:
        for key in sorted(results):
            # The joined recordings have a table of their own (long_table).
            runs = [r for r in results[key].runs if bucket_of(r.audio_s) == name and not is_joined(r.name)]
            if not runs:
                continue
            audio = sum(r.audio_s for r in runs)
            cpu = _cpu(runs)
            peak = f"{peaks[name] / MB:.0f} MB" if name in peaks else ""
            lines.append(
                f"| {name} | {key} | {len(runs)} | {audio:.0f} | {sum(r.wall_s for r in runs) / audio:.3f} | "
                f"{'–' if cpu is None else f'{cpu / audio:.3f}'} | {corpus_wer(runs, references):.3f} | "
                f"{peak} |"
            )
    uploads = {name: peak for name, peak in peaks.items() if name not in {b[0] for b in BUCKETS}}
    if peaks:
        lines += [
            "",
            "Peak RSS: one fresh service process (decode, pieces, engine) per bucket and per 600 s upload"
            + "".join(f"; {name}: {peak / MB:.0f} MB" for name, peak in uploads.items())
            + ".",
        ]
    return lines


def long_table(
    results: dict[str, TargetResult], references: dict[str, str], members: dict[str, list[str]]
) -> list[str]:
    lines = [
        "| recording | target | audio s | wall s | RTF | CPU s / audio s | WER | its clips one by one |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(results):
        by_name = {r.name: r for r in results[key].runs}
        for joined, parts in members.items():
            if joined not in by_name:
                continue
            run = by_name[joined]
            separate = corpus_wer([by_name[p] for p in parts if p in by_name], references)
            cpu = "–" if run.cpu_s is None else f"{run.cpu_s / run.audio_s:.3f}"
            rtf = run.wall_s / run.audio_s
            lines.append(
                f"| {joined} | {key} | {run.audio_s:.0f} | {run.wall_s:.1f} | {rtf:.3f} | {cpu} | "
                f"{run.wer:.3f} | {separate:.3f} |"
            )
    return lines


def duration_checks(
    results: dict[str, TargetResult], references: dict[str, str], members: dict[str, list[str]]
) -> list[Check]:
    a, c, d = (results.get(k) for k in "acd")
    checks: list[Check] = []
    if a is None:
        return checks

    def short(result: TargetResult) -> list[ClipRun]:
        return [r for r in result.runs if r.audio_s < SHORT_S and not is_joined(r.name)]

    a_wall = sum(r.wall_s for r in short(a))
    a_wer = corpus_wer(short(a), references)
    for other, ratio, what in (
        (c, FASTER_THAN_FLOOR, "the bare engine (c)"),
        (d, FASTER_THAN_SEED, "the seed (d)"),
    ):
        if other is None or not short(other):
            continue
        faster = sum(r.wall_s for r in short(other)) / a_wall
        checks.append(
            Check(
                faster >= ratio,
                f"clips under {SHORT_S:g} s: a {faster:.2f}x faster than {what} (target ≥ {ratio:g}x)",
            )
        )
        other_wer = corpus_wer(short(other), references)
        checks.append(
            Check(
                a_wer <= other_wer,
                f"clips under {SHORT_S:g} s: a corpus WER {a_wer:.3f} vs {other_wer:.3f} for {what} "
                "(target: equal or better)",
            )
        )
    a_cpu = _cpu(short(a))
    d_cpu = None if d is None else _cpu(short(d))
    if a_cpu and d_cpu:
        less = d_cpu / a_cpu
        checks.append(
            Check(
                less >= LESS_CPU_THAN_SEED,
                f"clips under {SHORT_S:g} s: a uses {less:.1f}x less CPU than the seed (d) "
                f"(target ≥ {LESS_CPU_THAN_SEED:g}x)",
            )
        )
    a_runs = {r.name: r for r in a.runs}
    c_runs = {} if c is None else {r.name: r for r in c.runs}
    for joined, parts in members.items():
        if joined not in a_runs:
            continue
        separate = corpus_wer([a_runs[p] for p in parts if p in a_runs], references)
        together = a_runs[joined].wer
        checks.append(
            Check(
                together <= separate + LONG_WER_MARGIN,
                f"{joined}: a WER {together:.3f} vs its clips one by one {separate:.3f} "
                f"(target within {LONG_WER_MARGIN})",
            )
        )
        if joined in c_runs:
            checks.append(
                Check(
                    a_runs[joined].wall_s <= c_runs[joined].wall_s,
                    f"{joined}: a {a_runs[joined].wall_s:.1f} s vs the bare engine's sequential long-form "
                    f"{c_runs[joined].wall_s:.1f} s (target: no more)",
                )
            )
    if a.first_request_s is not None and a.second_request_s is not None:
        limit = a.second_request_s * FIRST_REQUEST_RATIO + FIRST_REQUEST_SLACK_S
        checks.append(
            Check(
                a.first_request_s <= limit,
                f"a first request {a.first_request_s:.2f} s vs the same again {a.second_request_s:.2f} s "
                f"(target: no more, {FIRST_REQUEST_RATIO - 1:.0%} + {FIRST_REQUEST_SLACK_S * 1000:.0f} ms "
                "for noise)",
            )
        )
    return checks
