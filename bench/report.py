"""The Markdown report: side-by-side table, targets, settings table, memory, load, per clip;
where it is written (bench/results, the README's bench block)."""

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checks import Check
from .common import MB, REPO, Clip, TargetResult
from .load import LoadReport
from .memory import RssCurve
from .notes import NotesResult
from .sweep import CLIP_REGRESSION, SPEED_NOISE, WER_TOLERANCE, SweepRow, recommend, worst_regression

README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
logger = logging.getLogger("bench")
# A 1-minute load average above this, on entry, means something else was using the cores.
BUSY_LOAD = 0.5


@dataclass
class Run:
    machine: dict[str, str]
    load_before: str
    load_after: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    clips: Sequence[Clip] = ()
    warmup: Clip | None = None
    results: dict[str, TargetResult] = field(default_factory=dict)
    sweep_rows: list[SweepRow] = field(default_factory=list)
    sweep_clips: Sequence[Clip] = ()
    defaults_label: str = ""
    memory: RssCurve | None = None
    load: LoadReport | None = None
    notes: NotesResult | None = None
    checks: list[Check] = field(default_factory=list)
    minutes: float = 0.0
    command: str = ""
    # Titled sections rendered after the targets (per duration, long recordings: buckets.py).
    sections: list[tuple[str, list[str]]] = field(default_factory=list)


def _s(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def _mb(value: int | None) -> str:
    return "–" if value is None else f"{value / MB:.0f} MB"


def _side_by_side(results: dict[str, TargetResult]) -> list[str]:
    lines = [
        "| | RTF | CPU s / audio s | cold start | ready | peak RSS | mean WER | wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(results):
        r = results[key]
        lines.append(
            f"| {r.label} | {r.rtf:.3f} | {_s(r.cpu_per_audio_s, 3)} | {_s(r.cold_start_s, 2, ' s')} | "
            f"{_s(r.ready_s, 2, ' s')} | {_mb(r.peak_rss_bytes)} | {r.mean_wer:.3f} | {r.wall_s:.1f} |"
        )
    notes = [f"- {r.key}: {note}" for key in sorted(results) for r in [results[key]] for note in r.notes]
    return lines + (["", *notes] if notes else [])


def _sweep(run: Run) -> list[str]:
    rows = run.sweep_rows
    best = recommend(rows, run.defaults_label)
    names = ", ".join(c.path.name for c in run.sweep_clips)
    audio = sum(c.duration for c in run.sweep_clips)
    reused = ""
    if any(note.startswith("measured in") for r in rows for note in r.result.notes):
        reused = ", except that the current defaults reuse (c)'s timings of these clips"
    lines = [
        f"Engine floor (c) on {len(run.sweep_clips)} clips, {audio:.0f} s of audio ({names}): each "
        f"row is a fresh process{reused}. Threads change speed only; beam, precision and VAD can "
        "change the words.",
        "",
        "| settings | RTF | CPU s / audio s | mean WER | worst recording vs defaults | peak RSS | |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    defaults = next((r for r in rows if r.config.label == run.defaults_label), None)
    for row in rows:
        r = row.result
        marks = []
        if row is best:
            marks.append("chosen by the rule")
        if row.config.label == run.defaults_label:
            marks.append("current defaults")
        worst = "–"
        if defaults is not None and row is not defaults:
            before = {c.name: c.wer for c in defaults.result.runs}
            hit = max(r.runs, key=lambda c: c.wer - before.get(c.name, c.wer))
            worst = f"{worst_regression(row, defaults):+.2f} ({hit.name})"
        lines.append(
            f"| {row.config.label} | {r.rtf:.3f} | {_s(r.cpu_per_audio_s, 3)} | {r.mean_wer:.3f} | "
            f"{worst} | {_mb(r.peak_rss_bytes)} | {'; '.join(marks)} |"
        )
    verdict = (
        "the current defaults are that configuration."
        if best.config.label == run.defaults_label
        else f"the current defaults ({run.defaults_label or 'not in the table'}) are not: consider "
        f"{best.config.label}."
    )
    lines += [
        "",
        f"Rule: leave out any configuration that makes one recording over {CLIP_REGRESSION} WER worse "
        f"than the defaults do; of the rest, the fastest whose mean WER is within {WER_TOLERANCE} of "
        f"the best, the defaults kept unless that is over {SPEED_NOISE:.0%} faster; {verdict}",
    ]
    if len(run.sweep_clips) < len(run.clips):
        lines += [
            "",
            f"On {len(run.sweep_clips)} of the {len(run.clips)} clips the differences in words between "
            "settings mostly do not show: the defaults are chosen from a run over every clip "
            "(`python -m bench --skip a,b,d,memory,load --sweep-clips all`, about 7 minutes).",
        ]
    return lines


def _memory(curve: RssCurve) -> list[str]:
    points = [n for n in (1, curve.early, curve.total // 2, curve.total) if n in curve.rss_after]
    return [
        f"{curve.total} sequential requests with {curve.clip} (language={curve.language}) in "
        f"{curve.seconds:.0f} s; RSS of the "
        "server process after request "
        + ", ".join(f"{n}: {curve.rss_after[n] / MB:.0f} MB" for n in points)
        + "."
    ]


def _load(report: LoadReport) -> list[str]:
    burst = report.burst
    latencies = sorted(burst.health_latencies_s) or [0.0]
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    lines = [
        f"- {burst.summary()}",
        f"- /health during the load: {len(latencies)} polls, p99 {p99 * 1000:.0f} ms, "
        f"worst {latencies[-1] * 1000:.0f} ms",
        f"- RSS {report.baseline_rss / MB:.0f} MB warmed up, {report.after_rss / MB:.0f} MB after the load; "
        f"temp dirs after: {'empty' if not report.left_in_tmp else ', '.join(report.left_in_tmp)}",
    ]
    for result in (report.one, report.four):
        if result is not None:
            lines.append(
                f"- throughput, {result.clients} client(s) for {result.duration_s:g} s: "
                f"{result.audio_per_second():.2f} audio s per s, "
                f"{result.requests_per_minute():.1f} answers per minute "
                f"({len(result.ok)} x 200, {len(result.busy)} x 503)"
            )
    return lines


def _per_clip(results: dict[str, TargetResult]) -> list[str]:
    keys = sorted(results)
    head = "| clip | audio s | " + " | ".join(f"{k} wall s | {k} WER" for k in keys) + " |"
    lines = [head, "|---|---:|" + "---:|---:|" * len(keys)]
    first = results[keys[0]]
    for index, run in enumerate(first.runs):
        cells = " | ".join(
            f"{results[k].runs[index].wall_s:.2f} | {results[k].runs[index].wer:.2f}" for k in keys
        )
        lines.append(f"| {run.name} | {run.audio_s:.1f} | {cells} |")
    return lines


def render(run: Run) -> str:
    m = run.machine
    audio = sum(c.duration for c in run.clips)
    settings = ", ".join(f"{k}={v}" for k, v in run.settings.items())
    out = [
        f"# ChatServer benchmark, {m['date']}",
        "",
        f"- Machine: {m['cpu']}; {m['cores']} cores; {m['memory']}; {m['os']}",
        f"- Software: Python {m['python']}; {m['ffmpeg']}; {m['packages']}",
        f"- Commit: {m['commit']}; load average (1/5/15 min) before {run.load_before}, "
        f"after {run.load_after}",
        f"- Service settings (a, b, c): {settings}",
        f"- Recordings (a, b, c, d, rss, sweep): {len(run.clips)} clips, {audio:.0f} s of audio; warm-up "
        f"(the cold-start request, not timed): {run.warmup.path.name if run.warmup else '–'}",
        f"- Command: `{run.command}` ({run.minutes:.1f} min)",
        "",
    ]
    if float(run.load_before.split("/")[0]) > BUSY_LOAD:
        out += [
            f"> The machine was busy when the run began (load average {run.load_before}): timings "
            "are noisy; run again on a quiet machine before comparing them.",
            "",
        ]
    if run.results:
        out += ["## Side by side", "", *_side_by_side(run.results), ""]
    if run.checks:
        out += ["## Targets", "", *(c.line() for c in run.checks), ""]
    for title, lines in run.sections:
        out += [f"## {title}", "", *lines, ""]
    if run.sweep_rows:
        out += ["## Settings: speed against accuracy", "", *_sweep(run), ""]
    if run.memory is not None:
        out += ["## Memory over sequential requests", "", *_memory(run.memory), ""]
    if run.load is not None:
        out += ["## Load", "", *_load(run.load), ""]
    if run.results:
        out += ["<details><summary>Per clip</summary>", "", *_per_clip(run.results), "", "</details>", ""]
    return "\n".join(out)


def seed_checkpoint(settings: Any) -> Path | None:
    """The openai-whisper .pt of the service's model, for the seed's pipeline (d); None if none."""
    from chatserver.speech.engines.models import resolve

    checkpoint = Path(resolve(settings.model, "openai-whisper", settings.model_dir).location)
    if checkpoint.suffix != ".pt":
        logger.warning("the seed (d) left out: no openai-whisper checkpoint for model %s", settings.model)
        return None
    return checkpoint


def write(run: Run, report: str, out: Path) -> Path:
    """<out>/<date>.md and .json, and <out>/latest.md; returns the .md."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    (out / f"{stamp}.md").write_text(report, encoding="utf-8")
    (out / "latest.md").write_text(report, encoding="utf-8")
    raw = {
        "machine": run.machine,
        "settings": run.settings,
        "results": {k: r.to_json() for k, r in run.results.items()},
        "sweep": [{"config": asdict(r.config), "result": r.result.to_json()} for r in run.sweep_rows],
        "memory": asdict(run.memory) if run.memory else None,
        "notes": run.notes.to_json() if run.notes else None,
        "checks": [asdict(c) for c in run.checks],
    }
    (out / f"{stamp}.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    return out / f"{stamp}.md"


def update_readme(report: str) -> bool:
    readme = REPO / "README.md"
    if not readme.exists():
        return False
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    # The report's headings sit under the README's own "Benchmarks" heading.
    body = "\n".join("##" + line if line.startswith("#") else line for line in report.splitlines())
    readme.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}", encoding="utf-8")
    return True
