"""One command: ``.venv/bin/python -m bench`` (about 45 min on 2 cores; ``--quick``: about 10).

Runs every part in turn, each in fresh processes on 127.0.0.1, and writes
bench/results/<date>.md (+ .json) and bench/results/latest.md; where README.md has the
markers ``<!-- bench:start -->`` / ``<!-- bench:end -->``, the latest report goes between them.
The voice notes (bench/notes.py, about half of the time) run the service, the bare engine and
the seed alternately on every short clip. Shortfalls against the targets are reported in the
table, never hidden; ``--strict`` also makes them the exit status.
"""

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, Clip, load_manifest, restricted

logger = logging.getLogger("bench")

PARTS = ("a", "b", "c", "d", "joined", "rss", "notes", "sweep", "memory", "load")
# One clip per language plus the two classic English ones: --quick.
SUBSET = (
    "jfk.flac",
    "sr_english.wav",
    "fleurs-en-000.ogg",
    "fleurs-fr-000.ogg",
    "stp-fr-01.wav",
    "fleurs-de-001.ogg",
    "fleurs-es-002.ogg",
)
LOAD_CLIPS = ("jfk.flac", "sr_english.wav", "fleurs-en-004.ogg", "stp-fr-05.wav", "fleurs-es-002.ogg")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", type=Path, help="a folder with manifest.tsv (default: ../shared/audio)")
    parser.add_argument("--clips", help="comma-separated file names from the manifest (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: 7 clips, every 8th note, small sweep, 4 clients x 10 s",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {','.join(PARTS)}")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting for a, b, c and the load (e.g. beam_size=1); repeatable",
    )
    parser.add_argument(
        "--seed-beam", type=int, default=None, help="(d) beam size (default: openai-whisper's greedy)"
    )
    parser.add_argument(
        "--sweep-clips",
        default="2",
        help="settings table: N (first N clips per language, default 2), 'all', or file names",
    )
    parser.add_argument("--requests", type=int, default=200, help="memory: sequential requests (default 200)")
    parser.add_argument("--load-clients", type=int, default=16, help="load: closed-loop clients (default 16)")
    parser.add_argument("--load-seconds", type=float, default=60, help="load: seconds (default 60)")
    parser.add_argument(
        "--throughput-seconds",
        type=float,
        default=20,
        help="load: seconds at 1 and at 4 clients, one clip (default 20; 0 skips)",
    )
    parser.add_argument(
        "--notes-every",
        type=int,
        default=None,
        help="notes: every N-th of the commands and the clips up to 15 s (default 1; --quick: 8)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where reports go")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--keep-work", action="store_true", help="keep the logs and temp dirs of the run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips = args.clips or ",".join(SUBSET)
        args.sweep_clips = "1" if args.sweep_clips == "2" else args.sweep_clips
        args.requests = min(args.requests, 60)
        args.load_clients = min(args.load_clients, 4)
        args.load_seconds = min(args.load_seconds, 10)
        args.throughput_seconds = min(args.throughput_seconds, 8)
    args.notes_every = args.notes_every or (8 if args.quick else 1)
    unknown = set(filter(None, args.skip.split(","))) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts in --skip: {sorted(unknown)}")
    if args.requests <= 20:
        parser.error("--requests must be over 20: RSS after 20 requests is the reference point")
    return args


def _pick(manifest: list[Clip], names: str | None) -> list[Clip]:
    if not names:
        return manifest
    by_name = {c.path.name: c for c in manifest}
    missing = [n for n in names.split(",") if n not in by_name]
    if missing:
        raise SystemExit(f"not in the manifest: {missing}")
    return [by_name[n] for n in names.split(",")]


def _sweep_clips(clips: list[Clip], spec: str) -> list[Clip]:
    """``all``, ``N`` (the first N clips of each language, in manifest order) or file names."""
    if spec == "all":
        return clips
    if spec.isdigit():
        per_language: dict[str, list[Clip]] = {}
        for clip in clips:
            per_language.setdefault(clip.language, []).append(clip)
        chosen = {c.path.name for group in per_language.values() for c in group[: int(spec)]}
        return [c for c in clips if c.path.name in chosen]
    return _pick(clips, spec)


def _apply_settings(pairs: list[str]) -> dict[str, str]:
    """--set name=value becomes CHATSERVER_NAME=value here, so Settings() and every child see it."""
    env = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        env[f"CHATSERVER_{name.strip().upper()}"] = value.strip()
    os.environ.update(env)
    return env


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    overrides = _apply_settings(args.set)
    skip = set(filter(None, args.skip.split(",")))

    from chatserver.core.settings import Settings
    from chatserver.speech.engines import cpu_threads

    from . import checks, machine
    from .report import Run, render, seed_checkpoint, update_readme, write
    from .sweep import Config, configs, sweep
    from .worker import floor_threads

    settings = Settings()
    manifest = load_manifest(args.audio) if args.audio else load_manifest()
    clips = _pick(manifest, args.clips)
    warmup = min(clips, key=lambda c: c.duration)
    work = Path(tempfile.mkdtemp(prefix="chatserver-bench-"))
    members: dict[str, list[str]] = {}
    if "joined" not in skip:
        from .joined import joined_recordings

        # Long recordings, built for this run: every target transcribes them like the clips.
        joined, members = joined_recordings(clips, work / "joined")
        clips = [*clips, *joined]
    references = {c.path.name: c.reference for c in clips}
    threads = cpu_threads(settings)
    # The sweep varies the engine floor (c), so it starts from the floor's settings and threads.
    floor_config = Config(
        settings.beam_size, settings.compute_type, settings.vad_filter, floor_threads(settings)
    )
    run = Run(
        machine=machine.describe(),
        load_before=machine.load_average(),
        settings={
            "engine": settings.engine,
            "model": settings.model,
            "compute_type": settings.compute_type,
            "beam_size": str(settings.beam_size),
            "vad_filter": str(settings.vad_filter).lower(),
            "cpu_threads": f"{settings.cpu_threads or 'auto'} ({threads})",
            "max_concurrent_jobs": str(settings.max_concurrent_jobs),
            "max_queued_jobs": str(settings.max_queued_jobs),
        },
        clips=clips,
        warmup=warmup,
        defaults_label=floor_config.label,
        command="python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
    )
    started = time.monotonic()
    logger.info("work dir %s; %d clips, %.0f s of audio", work, len(clips), sum(c.duration for c in clips))
    env = dict(overrides)
    try:
        if "c" not in skip:
            from .local import engine_floor

            logger.info("(c) engine floor")
            run.results["c"] = engine_floor(clips, warmup, env, work / "c")
        if "a" not in skip:
            from .http_service import http_service

            logger.info("(a) service over HTTP")
            run.results["a"] = http_service(clips, warmup, env, work / "a")
        if "b" not in skip:
            from .lambda_rie import lambda_handler

            logger.info("(b) Lambda handler under the RIE")
            run.results["b"] = lambda_handler(clips, warmup, env, work / "b")
        if "d" not in skip:
            from .local import seed_pipeline

            checkpoint = seed_checkpoint(settings)
            if checkpoint is not None:
                logger.info("(d) seed pipeline (%s)", checkpoint.name)
                run.results["d"] = seed_pipeline(clips, warmup, {}, work / "d", checkpoint, args.seed_beam)
        if "notes" not in skip:
            from . import notes, notes_report

            sources = notes.note_clips(args.audio, every=args.notes_every)
            logger.info("notes: %d clips, five targets in turn", len(sources))
            run.notes = notes.run_notes(
                sources, env, work / "notes", seed_checkpoint(settings), args.seed_beam
            )
            run.sections += notes_report.sections(run.notes)
            run.checks += notes_report.checks(run.notes)
        for key, result in sorted(run.results.items()):
            logger.info(
                "%s: RTF %.3f, CPU/audio %.3f, cold %.2f s, WER %.3f",
                key,
                result.rtf,
                result.cpu_per_audio_s or 0,
                result.cold_start_s or 0,
                result.mean_wer,
            )
        run.checks += checks.target_checks(run.results)
        from . import buckets

        run.checks += buckets.duration_checks(run.results, references, members)
        peaks: dict[str, int] = {}
        if "rss" not in skip:
            from .joined import long_uploads
            from .local import run_worker

            # One fresh service process per bucket, so each peak is that bucket's own.
            groups: dict[str, list] = {}
            for clip in clips:
                groups.setdefault(buckets.bucket_of(clip.duration), []).append(clip)
            for upload in long_uploads(clips, work / "long", 600, with_speech=not args.quick):
                groups[upload.path.stem.removeprefix("joined-")] = [upload]
            for name, group in groups.items():
                logger.info("peak RSS: %s (%d recordings)", name, len(group))
                measured = run_worker(f"rss {name}", name, "service", group, warmup, env, work / "rss" / name)
                peaks[name] = measured.peak_rss_bytes or 0
            run.checks += buckets.peak_checks(peaks)
        if run.results:
            run.sections.append(("Per duration", buckets.table(run.results, references, peaks)))
        if members and run.results:
            run.sections.append(("Long recordings", buckets.long_table(run.results, references, members)))
        if "sweep" not in skip:
            defaults = floor_config
            chosen = configs(defaults)
            run.sweep_clips = _sweep_clips(clips, args.sweep_clips)
            names = [c.path.name for c in run.sweep_clips]
            measured = {}
            if "c" in run.results:  # (c) ran the defaults on these clips already
                measured[defaults.label] = restricted(run.results["c"], names, defaults.label)
            logger.info("settings sweep: %d configurations on %d clips", len(chosen), len(names))
            run.sweep_rows = sweep(run.sweep_clips, warmup, env, work / "sweep", chosen, measured)
        if "memory" not in skip:
            from .memory import rss_over_requests

            logger.info("memory: %d sequential requests with %s", args.requests, warmup.path.name)
            run.memory = rss_over_requests(warmup, env, work / "memory", total=args.requests)
            run.checks += checks.memory_checks(run.memory)
        if "load" not in skip:
            from .load import load_test

            load_clips = [c for c in _pick(manifest, ",".join(LOAD_CLIPS))]
            logger.info("load: %d clients x %g s", args.load_clients, args.load_seconds)
            run.load = load_test(
                load_clips, env, work / "load", args.load_clients, args.load_seconds, args.throughput_seconds
            )
            logger.info("load: %s", run.load.burst.summary())
            run.checks += checks.load_checks(run.load)
    except BaseException:
        logger.exception("benchmark failed; logs kept in %s", work)
        raise
    run.load_after = machine.load_average()
    run.minutes = (time.monotonic() - started) / 60

    report = render(run)
    path = write(run, report, args.out)
    sys.stdout.write(report + "\n")
    if not args.no_readme and update_readme(report):
        logger.info("README.md updated between the bench markers")
    logger.info("report: %s (%.1f min)", path, run.minutes)
    if args.keep_work:
        logger.info("work dir kept: %s", work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    missed = [c for c in run.checks if not c.passed]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
