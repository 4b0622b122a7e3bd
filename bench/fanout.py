"""Fan-out of a long S3 upload, measured: ``.venv/bin/python -m bench.fanout [--minutes 60]``.

Builds a recording of ``--minutes`` from the real clips of one language (joined end to end, a
pause between clips, repeated), then times what the fanned-out job does, stage by stage, in this
process on this machine's cores (one 3008 MB function has about 2 vCPUs):

- split: decode the whole upload, detect its language once, cut at silences, encode the FLAC chunks;
- every chunk: the service's transcription of one chunk, as one chunk worker runs it;
- merge: read the parts (JSON), shift and join them, write the result document (JSON);
- the critical path, split + slowest chunk + merge: the job's wall time with one function per chunk;
- the same recording in one pass, and both WERs against the joined references.

S3 and SQS round trips are left out (tens of milliseconds each, a few per chunk). GB-seconds
are wall seconds x the function's memory; the fan-out adds one init (model load) per function.
``--no-single`` skips the one pass (an hour costs ~12 min of CPU here).
"""

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chatserver.core.settings import Settings
from chatserver.jobs.fanout import FanOut
from chatserver.jobs.parts import PartResult, merge
from chatserver.speech.audio import ffmpeg_executable, write_flac
from chatserver.speech.engines import load_engine
from chatserver.speech.service import TranscriptionService
from tests.support.corpus import wer
from tests.support.long_audio import clips_of, join

from .machine import describe

logger = logging.getLogger("bench.fanout")

MEMORY_GB = 3008 / 1024


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--language", default="fr", help="clips of this language make the recording (fr)")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="default: the setting's")
    parser.add_argument("--search-seconds", type=float, default=None, help="default: the setting's")
    parser.add_argument("--no-single", action="store_true", help="skip the one-pass run")
    parser.add_argument("--split-only", action="store_true", help="time the split alone")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    overrides: dict = {
        "bucket": "bench",
        "chunk_queue_url": "local://bench",
        "max_job_audio_seconds": 4 * 3600.0,
    }
    if args.chunk_seconds:
        overrides["chunk_seconds"] = args.chunk_seconds
    if args.search_seconds:
        overrides["chunk_search_seconds"] = args.search_seconds
    settings = Settings(**overrides)
    started = time.perf_counter()
    engine = load_engine(settings)
    init_s = time.perf_counter() - started
    service = TranscriptionService(settings, engine)
    fanout = FanOut(settings, s3=None, service=service)
    figures: dict = {
        "machine": describe(),
        "minutes": args.minutes,
        "chunk_seconds": settings.chunk_seconds,
        "search_seconds": settings.chunk_search_seconds,
        "beam_size": settings.beam_size,
        "engine_init_s": round(init_s, 2),
    }
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        work = Path(tmp)
        recording = join(clips_of(args.language), work / "long.flac", min_seconds=args.minutes * 60)
        figures["duration_s"] = round(recording.duration, 1)
        sys.stderr.write(f"recording: {recording.duration:.0f} s of {args.language}\n")

        # --- split ---------------------------------------------------------------------------
        t0 = time.perf_counter()
        samples = service.decode(recording.path, settings.max_job_audio_seconds)
        t1 = time.perf_counter()
        language = fanout.language(samples, None)
        t2 = time.perf_counter()
        cuts = fanout.cut(samples)
        t3 = time.perf_counter()
        chunk_paths = []
        for index, cut in enumerate(cuts):
            path = work / f"{index:04d}.flac"
            write_flac(
                samples[cut.start : cut.end],
                path,
                ffmpeg=ffmpeg_executable(settings.ffmpeg_path),
                timeout_s=120,
            )
            chunk_paths.append(path)
        t4 = time.perf_counter()
        figures["split"] = {
            "total_s": round(t4 - t0, 2),
            "decode_s": round(t1 - t0, 2),
            "detect_language_s": round(t2 - t1, 2),
            "cut_s": round(t3 - t2, 3),
            "encode_s": round(t4 - t3, 2),
            "language": language,
            "chunks": len(cuts),
            "chunk_lengths_s": [round(c.end_s - c.start_s, 1) for c in cuts],
        }
        sys.stderr.write(f"split: {json.dumps(figures['split'])}\n")
        if args.split_only:
            return _report(figures, args.json)
        del samples

        # --- chunks --------------------------------------------------------------------------
        options = service.options(language)
        parts: list[str] = []
        walls: list[float] = []
        for index, (cut, path) in enumerate(zip(cuts, chunk_paths, strict=True)):
            t = time.perf_counter()
            transcript = service.transcribe(path, options, max_seconds=cut.end_s - cut.start_s + 5)
            walls.append(time.perf_counter() - t)
            part = PartResult.of_chunk(index, cut.start_s, cut.end_s, transcript)
            parts.append(part.model_dump_json())
            sys.stderr.write(f"chunk {index}: {cut.end_s - cut.start_s:.0f} s in {walls[-1]:.1f} s\n")
        # --- merge ---------------------------------------------------------------------------
        t = time.perf_counter()
        merged = merge([PartResult.model_validate_json(p) for p in parts], language, recording.duration)
        merged.model_dump_json()
        merge_s = time.perf_counter() - t
        quantiles = statistics.quantiles(walls, n=10) if len(walls) > 1 else walls
        figures["chunks"] = {
            "count": len(walls),
            "wall_s": [round(w, 2) for w in walls],
            "min_s": round(min(walls), 2),
            "median_s": round(statistics.median(walls), 2),
            "p90_s": round(quantiles[-1], 2),
            "max_s": round(max(walls), 2),
            "sum_s": round(sum(walls), 1),
        }
        figures["merge_s"] = round(merge_s, 3)
        critical = figures["split"]["total_s"] + max(walls) + merge_s
        figures["critical_path_s"] = round(critical, 1)
        figures["critical_path_with_cold_start_s"] = round(critical + 2 * init_s, 1)
        figures["fanout_wer"] = round(wer(recording.reference, merged.text), 4)
        fan_busy = figures["split"]["total_s"] + sum(walls) + merge_s
        figures["fanout_gb_s"] = round(fan_busy * MEMORY_GB, 0)
        # Each chunk function and the splitter may start cold: one init each, at most.
        figures["fanout_gb_s_all_cold"] = round((fan_busy + (len(walls) + 1) * init_s) * MEMORY_GB, 0)

        # --- one pass ------------------------------------------------------------------------
        if not args.no_single:
            t = time.perf_counter()
            single = service.transcribe(recording.path, service.options(None), max_seconds=4 * 3600)
            single_s = time.perf_counter() - t
            figures["single_pass_s"] = round(single_s, 1)
            figures["single_wer"] = round(wer(recording.reference, single.text), 4)
            figures["single_gb_s"] = round((single_s + init_s) * MEMORY_GB, 0)
    return _report(figures, args.json)


def _report(figures: dict, path: Path | None) -> int:
    text = json.dumps(figures, indent=2)
    sys.stdout.write(text + "\n")
    if path is not None:
        path.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
