"""Voice notes (issue 18): the service, the bare engine and the seed alternating on each clip.

Every clip of ../shared/commands and every clip of ../shared/audio up to 15 s goes to five
targets in turn: the service over HTTP with the clip's language and without one, the bare
engine (bench/worker.py ``floor``) with and without, and the seed's pipeline with it (the
seed's client sent one). Each target is one long-lived, warmed-up process and only one runs at
a time; the order rotates from clip to clip, so that none is always first and a busy spell of
a shared machine falls on every target alike: the ratios come from the same minutes.

The service's log says when a piece of a request was decoded a second time, in the 30 s
window (engines/faster.py), when a run of speech was decoded again on its own and how many
pieces a request had (speech/service.py), and each engine call (faster_whisper): every line
carries the request id that the answer's X-Request-ID header names, so they are counted per
clip. The run is saved as notes.json in its work dir (``python -m bench.notes_report`` renders
it again).
"""

import contextlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from .common import Clip, load_manifest, tree_cpu_s
from .http_service import uvicorn
from .local import Served

logger = logging.getLogger("bench")

NOTE_MAX_S = 15.0
# name: (process, with the clip's language)
TARGETS = {
    "service": ("a", True),
    "service, no language": ("a", False),
    "bare": ("c", True),
    "bare, no language": ("c", False),
    "seed": ("d", True),
}
# The service's log lines (core/logs.py's plain format): "... [request id] logger: message".
LOG_LINE = re.compile(r"\[(?P<rid>[0-9a-f]+)\] (?P<logger>[\w.]+): (?P<message>[^\n]*)")
# engines/faster.py: a piece decoded in its sized window and then again in the 30 s window.
FULL_AGAIN = re.compile(r"sized window of \d+ frames (?P<why>looked wrong|left a tail): full window instead")
# speech/service.py, once per request: speech runs no segment covered, decoded once more.
SUMMARY = re.compile(r"transcribed .*: (?P<pieces>\d+) pieces \((?P<again>\d+) runs decoded again\)")
RUN_AGAIN = "a run left out, decoded again"


@dataclass
class Attempt:
    wall_s: float
    cpu_s: float
    text: str
    request_id: str = ""  # the service's X-Request-ID
    # The service's, from its log: why each extra decode was made, pieces, engine calls.
    second_decodes: list[str] = field(default_factory=list)
    pieces: int | None = None
    engine_calls: int = 0


@dataclass
class Note:
    name: str
    source: str  # commands or audio
    language: str
    duration: float
    reference: str
    runs: dict[str, Attempt] = field(default_factory=dict)


@dataclass
class NotesResult:
    notes: list[Note]
    labels: dict[str, str]  # target -> what it is
    warmup: str
    minutes: float
    unattributed: int = 0  # second-decode log lines of no request of the run (format changed?)
    unlogged: int = 0  # service requests whose id the log never names (second decodes unknown)

    def targets(self) -> list[str]:
        return [t for t in TARGETS if t in self.labels]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "NotesResult":
        notes = [
            Note(**(n | {"runs": {t: Attempt(**a) for t, a in n["runs"].items()}})) for n in data["notes"]
        ]
        return cls(**(data | {"notes": notes}))


def note_clips(
    audio_dir: Path | None = None, commands_dir: Path | None = None, every: int = 1
) -> list[tuple[str, Clip]]:
    """../shared/commands, then the clips of ../shared/audio up to 15 s (the long-* ones left
    out), each with where it comes from; every ``every``-th of them for a short run."""
    from tests.support import corpus

    commands = load_manifest(commands_dir) if commands_dir else corpus.COMMANDS
    audio = load_manifest(audio_dir) if audio_dir else corpus.MANIFEST
    short = [c for c in audio if c.duration <= NOTE_MAX_S and not c.path.name.startswith("long-")]
    return [*(("commands", c) for c in commands), *(("audio", c) for c in short)][::every]


def _order(index: int, targets: Sequence[str]) -> list[str]:
    shift = index % len(targets)
    return [*targets[shift:], *targets[:shift]]


def run_notes(
    sources: Sequence[tuple[str, Clip]],
    env: dict[str, str],
    workdir: Path,
    checkpoint: Path | None,
    seed_beam: int | None,
) -> NotesResult:
    """``checkpoint``: the seed's openai-whisper .pt; None leaves the seed out."""
    clips = [clip for _, clip in sources]
    notes = [Note(c.path.name, source, c.language, c.duration, c.reference) for source, c in sources]
    targets = [t for t in TARGETS if checkpoint is not None or TARGETS[t][0] != "d"]
    # The second decodes are read from the service's own log lines: keep them plain and at INFO.
    service_env = {**env, "CHATSERVER_LOG_JSON": "false", "CHATSERVER_LOG_LEVEL": "INFO"}
    seed_args = ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    if seed_beam is not None:
        seed_args += ["--beam-size", str(seed_beam)]
    warmup = min(clips, key=lambda c: c.duration)
    started = time.monotonic()
    (workdir / "a" / "tmp").mkdir(parents=True, exist_ok=True)
    with (
        uvicorn(service_env, workdir / "a") as server,
        httpx.Client(timeout=600) as http,
        Served("floor", env, workdir / "c") as bare,
        Served("seed", env, workdir / "d", seed_args)
        if checkpoint is not None
        else contextlib.nullcontext() as seed,
    ):
        labels = {
            "service": "(a) service over HTTP, the clip's language sent",
            "service, no language": "(a) service over HTTP, no language sent (detected)",
            "bare": f"(c) {bare.note}, the clip's language given",
            "bare, no language": f"(c) {bare.note}, no language (detected)",
        }
        if seed is not None:
            labels["seed"] = f"(d) seed: {seed.note}, FFmpeg to .wav, the clip's language given"

        def attempt(target: str, clip: Clip) -> Attempt:
            process, with_language = TARGETS[target]
            language = clip.language if with_language else None
            if process == "a":
                cpu = tree_cpu_s(server.ps)
                wall, response = server.post(http, clip, language)
                used = tree_cpu_s(server.ps) - cpu
                rid = response.headers.get("x-request-id", "")
                return Attempt(wall, used, response.json()["transcript"], rid)
            worker = bare if process == "c" else seed
            assert worker is not None
            return Attempt(*worker.transcribe(clip.path, language))

        # Each process's first calls pay for what is loaded lazily: not timed.
        warmups = [attempt(target, warmup) for target in targets]
        for index, (clip, note) in enumerate(zip(clips, notes, strict=True)):
            for target in _order(index, targets):
                note.runs[target] = attempt(target, clip)
            if index % 25 == 24:
                logger.info("notes: %d of %d clips", index + 1, len(clips))
        log = server.log.read_text(encoding="utf-8", errors="replace")
    result = NotesResult(notes, labels, warmup.path.name, (time.monotonic() - started) / 60)
    known = {a.request_id for a in warmups if a.request_id}
    result.unattributed, result.unlogged = read_service_log(result.notes, log, known)
    (workdir / "notes.json").write_text(json.dumps(result.to_json()), encoding="utf-8")
    return result


def read_service_log(notes: Sequence[Note], log: str, known: set[str]) -> tuple[int, int]:
    """Each service run gets, from the lines that name its request id, why a piece or run of it
    was decoded again, its pieces and its engine calls. Returns the second-decode lines that name
    no request of the run (``known``: the warm-ups'), and the requests the log never names."""
    by_rid = {run.request_id: run for note in notes for run in note.runs.values() if run.request_id}
    unattributed, seen = 0, set()
    for line in LOG_LINE.finditer(log):
        run, message = by_rid.get(line["rid"]), line["message"]
        seen.add(line["rid"])
        if line["logger"] == "faster_whisper" and message.startswith("Processing audio"):
            if run is not None:
                run.engine_calls += 1
        elif again := FULL_AGAIN.search(message):
            if run is not None:
                run.second_decodes.append(again["why"])
            elif line["rid"] not in known:
                unattributed += 1
        elif (summary := SUMMARY.search(message)) and run is not None:
            run.pieces = int(summary["pieces"])
            run.second_decodes += [RUN_AGAIN] * int(summary["again"])
    return unattributed, len(set(by_rid) - seen)
