"""Voice notes (bench/notes.py): tables per duration and per language, the second decodes,
and issue 18's targets on them (PASS or SHORTFALL, never hidden)."""

import math
from collections import Counter
from collections.abc import Callable, Sequence

from tests.support.corpus import corpus_wer, normalise

from .checks import Check
from .notes import Note, NotesResult

BUCKETS = (("under 3 s", 0.0, 3.0), ("3-5 s", 3.0, 5.0), ("5-10 s", 5.0, 10.0), ("10-15 s", 10.0, math.inf))
WITH_LANGUAGE_RATIO = 0.40  # service wall over the bare engine's, language given
WITHOUT_LANGUAGE_RATIO = 0.30  # the same, no language sent to either
MANY_WORDS, MANY_MARGIN = 200, 0.02  # a language with this many reference words: within
SOME_WORDS, SOME_MARGIN = 50, 0.05

Group = tuple[str, Callable[[Note], bool]]


def _groups() -> list[Group]:
    by_duration: list[Group] = [
        (name, lambda n, low=low, high=high: low <= n.duration < high) for name, low, high in BUCKETS
    ]
    return [
        *by_duration,
        ("commands (synthetic)", lambda n: n.source == "commands"),
        ("audio (human)", lambda n: n.source == "audio"),
        ("all", lambda n: True),
    ]


def _wall(notes: Sequence[Note], target: str) -> float:
    return sum(n.runs[target].wall_s for n in notes)


def _wer(notes: Sequence[Note], target: str) -> float:
    if not notes:
        return math.nan
    return corpus_wer([n.reference for n in notes], [n.runs[target].text for n in notes])[0]


def _words(notes: Sequence[Note]) -> int:
    return sum(len(normalise(n.reference).split()) for n in notes)


def _twice(notes: Sequence[Note], target: str) -> list[Note]:
    return [n for n in notes if n.runs[target].second_decodes]


def _ratio(notes: Sequence[Note], service: str, bare: str) -> float:
    return _wall(notes, service) / _wall(notes, bare) if notes else math.nan


def _slash(values: Sequence[float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def _table(result: NotesResult, with_language: bool) -> list[str]:
    service, bare = ("service", "bare") if with_language else ("service, no language", "bare, no language")
    shown = [t for t in (service, bare, "seed" if with_language else "") if t in result.labels]
    names = " / ".join(t.split(",")[0] for t in shown)
    lines = [
        f"| clips of | clips | audio s | wall s: {names} | service / bare | CPU s per audio s: {names} "
        f"| CPU service / bare | corpus WER: {names} | reference words | decoded again |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, member in _groups():
        notes = [n for n in result.notes if member(n)]
        if not notes:
            continue
        audio = sum(n.duration for n in notes)
        cpu = [sum(n.runs[t].cpu_s for n in notes) / audio for t in shown]
        lines.append(
            f"| {name} | {len(notes)} | {audio:.0f} | {_slash([_wall(notes, t) for t in shown], 1)} | "
            f"{_ratio(notes, service, bare):.2f} | {_slash(cpu, 3)} | {cpu[0] / cpu[1]:.2f} | "
            f"{_slash([_wer(notes, t) for t in shown], 3)} | {_words(notes)} | "
            f"{len(_twice(notes, service))} |"
        )
    return lines


def _languages(result: NotesResult) -> dict[str, list[Note]]:
    by_language: dict[str, list[Note]] = {}
    for note in result.notes:
        by_language.setdefault(note.language, []).append(note)
    return dict(sorted(by_language.items(), key=lambda item: (-_words(item[1]), item[0])))


def _per_language(result: NotesResult) -> list[str]:
    with_lang = [t for t in ("service", "bare", "seed") if t in result.labels]
    lines = [
        "Sorted by reference words; the commands and the human clips of each language together. "
        "Time ratios are wall-time sums, service over bare engine.",
        "",
        f"| language | clips (commands + audio) | reference words | WER, language given: "
        f"{' / '.join(with_lang)} | time, language given | WER, no language: service / bare | "
        "time, no language | decoded again (given / none) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for language, notes in _languages(result).items():
        commands = sum(n.source == "commands" for n in notes)
        without = ("service, no language", "bare, no language")
        lines.append(
            f"| {language} | {len(notes)} ({commands} + {len(notes) - commands}) | {_words(notes)} | "
            f"{_slash([_wer(notes, t) for t in with_lang], 3)} | {_ratio(notes, 'service', 'bare'):.2f} | "
            f"{_slash([_wer(notes, t) for t in without], 3)} | {_ratio(notes, *without):.2f} | "
            f"{len(_twice(notes, 'service'))} / {len(_twice(notes, 'service, no language'))} |"
        )
    return lines


def _second_decodes(result: NotesResult) -> list[str]:
    lines = [
        "Counted from the service's log, per request (X-Request-ID): a piece decoded in a window "
        "sized to it goes to the 30 s window again where that decode looked wrong (Whisper's own "
        "thresholds, or its whole token allowance used) or left a tail; a run of speech that no "
        "segment covered is decoded once more on its own. The cost: the service's time on the clips "
        "decoded again against the bare engine's on the same clips, beside the same ratio on the "
        "others; 'extra' is what those clips took over the others' ratio.",
        "",
    ]
    for service, bare in (("service", "bare"), ("service, no language", "bare, no language")):
        twice = _twice(result.notes, service)
        once = [n for n in result.notes if not n.runs[service].second_decodes]
        reasons = Counter(why for n in twice for why in n.runs[service].second_decodes)
        calls = sum(n.runs[service].engine_calls for n in result.notes)
        pieces = sum(n.runs[service].pieces or 0 for n in result.notes)
        head = (
            f"- **{service}**: {len(twice)} of {len(result.notes)} clips "
            f"({len(twice) / len(result.notes):.0%}) decoded again ("
            + (", ".join(f"{why}: {count}" for why, count in reasons.most_common()) or "none")
            + f"); {calls} engine calls for {pieces} pieces"
        )
        # Each reason logged is one engine call more than the pieces: a difference means an
        # extra decode the log does not explain (a message changed or a new kind of retry).
        if calls != pieces + sum(reasons.values()):
            head += f" (**{calls - pieces - sum(reasons.values())} calls the log does not explain**)"
        if twice and once:
            r_twice, r_once = _ratio(twice, service, bare), _ratio(once, service, bare)
            extra = _wall(twice, service) - r_once * _wall(twice, bare)
            head += (
                f"; on them the service took {_wall(twice, service):.1f} s against the bare engine's "
                f"{_wall(twice, bare):.1f} s ({r_twice:.2f}x; {r_once:.2f}x on the others), "
                f"{_wall(twice, service) / len(twice):.2f} s a clip against "
                f"{_wall(once, service) / len(once):.2f} s; "
                f"extra ≈ {extra:.1f} s, {extra / _wall(result.notes, service):.0%} of the service's time"
            )
        lines.append(head + ".")
    if result.unattributed or result.unlogged:
        lines.append(
            f"- **Not counted**: {result.unattributed} second-decode log lines named no request of the "
            f"run and {result.unlogged} requests were never named in the log: the log format changed?"
        )
    listed = sorted(_twice(result.notes, "service"), key=lambda n: n.duration)
    if listed:
        lines += [
            "",
            "<details><summary>Clips decoded again, language given</summary>",
            "",
            "| clip | language | s | why | service s | bare s | WER service / bare |",
            "|---|---|---:|---|---:|---:|---:|",
        ]
        for n in listed:
            s, b = n.runs["service"], n.runs["bare"]
            lines.append(
                f"| {n.name} | {n.language} | {n.duration:.1f} | {', '.join(s.second_decodes)} | "
                f"{s.wall_s:.2f} | {b.wall_s:.2f} | {_wer([n], 'service'):.2f} / {_wer([n], 'bare'):.2f} |"
            )
        lines += ["", "</details>"]
    return lines


def _per_clip(result: NotesResult) -> list[str]:
    targets = result.targets()
    lines = [
        "<details><summary>Per clip: wall s and WER of each target</summary>",
        "",
        "| clip | language | s | " + " | ".join(targets) + " | decoded again |",
        "|---|---|---:|" + "---:|" * len(targets) + "---|",
    ]
    for n in result.notes:
        cells = " | ".join(f"{n.runs[t].wall_s:.2f}, {_wer([n], t):.2f}" for t in targets)
        twice = "given" * bool(n.runs["service"].second_decodes)
        if n.runs["service, no language"].second_decodes:
            twice = f"{twice} none".strip()
        lines.append(f"| {n.name} | {n.language} | {n.duration:.1f} | {cells} | {twice} |")
    return [*lines, "", "</details>"]


def sections(result: NotesResult) -> list[tuple[str, list[str]]]:
    audio = sum(n.duration for n in result.notes)
    sources = Counter(n.source for n in result.notes)
    intro = [
        f"{len(result.notes)} clips ({sources['commands']} of ../shared/commands, {sources['audio']} of "
        f"../shared/audio up to 15 s), {audio:.0f} s of audio, in {result.minutes:.1f} min. Each clip "
        "went to every target in turn, in an order that rotates from clip to clip; each target is one "
        f"long-lived process, warmed up on {result.warmup} (not timed). The service is timed from the "
        "client (HTTP and decoding included), the others inside their process (the bare engine on "
        "decoded audio, the seed with its FFmpeg).",
        "",
        *(f"- {target}: {label}" for target, label in result.labels.items()),
        "",
    ]
    return [
        ("Voice notes, language given", [*intro, *_table(result, with_language=True)]),
        ("Voice notes, no language", _table(result, with_language=False)),
        ("Voice notes per language", _per_language(result)),
        ("Voice notes decoded again", _second_decodes(result)),
        ("Voice notes per clip", _per_clip(result)),
    ]


def checks(result: NotesResult) -> list[Check]:
    out = []
    for service, bare, bound, what in (
        ("service", "bare", WITH_LANGUAGE_RATIO, "language given"),
        ("service, no language", "bare, no language", WITHOUT_LANGUAGE_RATIO, "no language"),
    ):
        for name, member in [*_groups()[: len(BUCKETS)], ("all", lambda n: True)]:
            notes = [n for n in result.notes if member(n)]
            if not notes:
                continue
            ratio = _ratio(notes, service, bare)
            out.append(
                Check(
                    ratio <= bound,
                    f"notes, {what}, {name} ({len(notes)} clips): service {ratio:.2f}x the bare engine's "
                    f"wall time (target ≤ {bound:.2f}x)",
                )
            )
    service, bare = _wer(result.notes, "service"), _wer(result.notes, "bare")
    out.append(
        Check(
            service <= bare,
            f"notes, language given, all {len(result.notes)} clips: corpus WER {service:.3f} vs the bare "
            f"engine's {bare:.3f} (target: no worse)",
        )
    )
    for language, notes in _languages(result).items():
        words = _words(notes)
        if words < SOME_WORDS:
            continue
        margin = MANY_MARGIN if words >= MANY_WORDS else SOME_MARGIN
        service, bare = _wer(notes, "service"), _wer(notes, "bare")
        out.append(
            Check(
                service <= bare + margin,
                f"notes, language given, {language} ({words} words): corpus WER {service:.3f} vs the bare "
                f"engine's {bare:.3f} (target ≤ bare + {margin:.2f})",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.notes_report notes.json``: the sections and targets of a saved run
    (bench/notes.py writes notes.json into the work dir; the run's .json holds it under "notes")."""
    import argparse
    import json
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bench.notes_report", description=main.__doc__)
    parser.add_argument("json", type=Path)
    data = json.loads(parser.parse_args(argv).json.read_text(encoding="utf-8"))
    # A run's .json holds the notes under "notes"; the work dir's notes.json is the notes alone.
    result = NotesResult.from_json(data["notes"] if isinstance(data.get("notes"), dict) else data)
    out = [c.line() for c in checks(result)]
    for title, lines in sections(result):
        out += ["", f"## {title}", "", *lines]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
