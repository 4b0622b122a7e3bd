"""One measured process for (c) the engine floor and (d) the seed's pipeline.

    python -m bench.worker floor --clips clips.json --out result.json
    python -m bench.worker seed --clips clips.json --out result.json --checkpoint base.pt
    python -m bench.worker service --clips clips.json --out result.json
    python -m bench.worker floor --serve    (or seed --serve --checkpoint base.pt)

A fresh process per run, so its cold start and peak RSS are its own. The first clip is the
warm-up (its answer ends the cold start) and is not timed; every other clip is timed with
its wall and CPU time. The floor reads its settings from CHATSERVER_* like the service does.
With ``--serve`` the process stays up and takes clips one at a time (``serve``), so that
several targets can run alternately on the same clips.
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTED = time.time()


def _cpu_s(children: bool) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:  # FFmpeg, once reaped
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def floor_threads(settings: Any) -> int:
    """CHATSERVER_CPU_THREADS where the sweep sets it; else not the service's one thread per job
    but CTranslate2's default of 4, cut to the cores (more OpenMP threads only slow it down)."""
    return settings.cpu_threads or min(4, len(os.sched_getaffinity(0)))


def _floor_engine() -> tuple[Callable[[str], Any], Callable[[Any, str | None], str], str]:
    """The bare engine with faster-whisper's defaults: how to decode a file, how to transcribe
    decoded audio (optionally in a given language), and what it is."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from faster_whisper import WhisperModel

    from chatserver.core.settings import Settings
    from chatserver.speech.audio import decode, ffmpeg_executable
    from chatserver.speech.engines import models

    settings = Settings()
    resolved = models.resolve(settings.model, "faster-whisper", settings.model_dir)
    threads = floor_threads(settings)
    model = WhisperModel(
        resolved.location, device="cpu", compute_type=settings.compute_type, cpu_threads=threads
    )
    ffmpeg = ffmpeg_executable(settings.ffmpeg_path)

    def samples(path: str) -> Any:
        return decode(Path(path), ffmpeg=ffmpeg, timeout_s=60, max_seconds=3600)

    def transcribe(audio: Any, language: str | None = None) -> str:
        segments, _ = model.transcribe(
            audio, language=language, beam_size=settings.beam_size, vad_filter=settings.vad_filter
        )
        return "".join(s.text for s in segments).strip()

    note = (
        f"bare faster-whisper WhisperModel.transcribe, {settings.compute_type}, beam {settings.beam_size}, "
        f"VAD {settings.vad_filter}, otherwise its defaults (30 s windows), {threads} threads"
    )
    return samples, transcribe, note


def floor(clips: list[dict[str, Any]]) -> dict[str, Any]:
    """The bare engine with faster-whisper's defaults on decoded audio: the floor so far.

    One ``WhisperModel.transcribe`` call per recording, no pieces and no sized window: what
    anyone calling faster-whisper directly gets, long recordings included (sequential 30 s
    windows).
    """
    samples, transcribe, note = _floor_engine()
    loaded = time.time()
    transcribe(samples(clips[0]["path"]))
    first_answer = time.time()
    decoded = [samples(c["path"]) for c in clips[1:]]
    runs = []
    for audio in decoded:
        wall, cpu = time.perf_counter(), _cpu_s(children=False)
        text = transcribe(audio)
        runs.append({"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_s(False) - cpu, "text": text})
    return {"loaded_at": loaded, "first_answer_at": first_answer, "runs": runs, "note": note}


def service(clips: list[dict[str, Any]]) -> dict[str, Any]:
    """The service's own pipeline on the files (decode, pieces, engine): for peak RSS per duration."""
    from chatserver.core.settings import Settings
    from chatserver.speech.service import TranscriptionService

    transcription = TranscriptionService.from_settings(Settings())
    options = transcription.options(None)
    loaded = time.time()

    def transcribe(clip: dict[str, Any]) -> str:
        return transcription.transcribe(Path(clip["path"]), options, max_seconds=3600).text

    transcribe(clips[0])
    first_answer = time.time()
    runs = []
    for clip in clips[1:]:
        wall, cpu = time.perf_counter(), _cpu_s(children=True)
        text = transcribe(clip)
        runs.append({"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_s(True) - cpu, "text": text})
    return {"loaded_at": loaded, "first_answer_at": first_answer, "runs": runs, "note": ""}


def _seed_engine(
    checkpoint: str, beam_size: int | None, stack: contextlib.ExitStack
) -> tuple[Callable[[str, str | None], str], str]:
    """The seed's pipeline: openai-whisper fp32, FFmpeg to a temp .wav, one call per file."""
    import imageio_ffmpeg
    import torch
    import whisper

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    # whisper.load_audio runs "ffmpeg" from PATH: give it the same binary under that name.
    bin_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ffmpeg-"))
    os.symlink(ffmpeg, os.path.join(bin_dir, "ffmpeg"))
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    model = whisper.load_model(checkpoint, device="cpu")
    # beam_size None is openai-whisper's own default for transcribe(): greedy with fallback.
    extra = {} if beam_size is None else {"beam_size": beam_size}

    def transcribe(path: str, language: str | None = None) -> str:
        with tempfile.TemporaryDirectory(prefix="seed-") as directory:
            wav = os.path.join(directory, "audio.wav")
            subprocess.run([ffmpeg, "-nostdin", "-y", "-i", path, wav], check=True, capture_output=True)
            return model.transcribe(wav, fp16=False, language=language, **extra)["text"]

    beam = "greedy (openai-whisper's default)" if beam_size is None else f"beam {beam_size}"
    note = (
        f"openai-whisper {whisper.__version__} fp32 (fp16=False), {beam}, {torch.get_num_threads()} threads"
    )
    return transcribe, note


def seed(clips: list[dict[str, Any]], checkpoint: str, beam_size: int | None) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        transcribe, note = _seed_engine(checkpoint, beam_size, stack)
        loaded = time.time()
        transcribe(clips[0]["path"])
        first_answer = time.time()
        runs = []
        for clip in clips[1:]:
            wall, cpu = time.perf_counter(), _cpu_s(children=True)
            text = transcribe(clip["path"])
            runs.append({"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_s(True) - cpu, "text": text})
    return {"loaded_at": loaded, "first_answer_at": first_answer, "runs": runs, "note": note}


def serve(mode: str, checkpoint: str | None, beam_size: int | None) -> None:
    """One clip at a time, for runs that interleave targets (bench/notes.py).

    Reads JSON lines ``{"path": ..., "language": ... or null}`` on stdin and answers each with
    ``{"wall_s", "cpu_s", "text"}`` on stdout, timed as ``floor`` and ``seed`` time their clips
    (the floor's decoding outside the timing, the seed's FFmpeg inside it). The first line out
    is ``{"ready": ..., "note": ...}``; anything else the libraries print goes to stderr.
    """
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with contextlib.ExitStack() as stack:
        if mode == "floor":
            samples, engine, note = _floor_engine()
        else:
            seed_transcribe, note = _seed_engine(checkpoint or "", beam_size, stack)
        answers.write(json.dumps({"ready": time.time() - STARTED, "note": note}) + "\n")
        for line in sys.stdin:
            request = json.loads(line)
            path, language = request["path"], request.get("language")
            if mode == "floor":
                audio = samples(path)  # outside the timing, as floor() decodes before it times
                wall, cpu = time.perf_counter(), _cpu_s(children=False)
                text = engine(audio, language)
            else:
                wall, cpu = time.perf_counter(), _cpu_s(children=True)
                text = seed_transcribe(path, language)
            elapsed, used = time.perf_counter() - wall, _cpu_s(children=mode != "floor") - cpu
            answers.write(json.dumps({"wall_s": elapsed, "cpu_s": used, "text": text}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["floor", "seed", "service"])
    parser.add_argument("--clips", type=Path, help="the clips, the warm-up first (not with --serve)")
    parser.add_argument("--out", type=Path, help="where the result goes (not with --serve)")
    parser.add_argument("--serve", action="store_true", help="floor, seed: clips one at a time on stdin")
    parser.add_argument("--checkpoint", help="seed: the openai-whisper .pt derived from the same weights")
    parser.add_argument("--beam-size", type=int, default=None, help="seed: beam size (default: greedy)")
    args = parser.parse_args(argv)
    if args.serve:
        if args.mode == "service":
            parser.error("--serve is for floor and seed (the service serves over HTTP)")
        serve(args.mode, args.checkpoint, args.beam_size)
        return 0
    if args.clips is None or args.out is None:
        parser.error("--clips and --out are required without --serve")
    clips = json.loads(args.clips.read_text())
    if args.mode == "floor":
        result = floor(clips)
    elif args.mode == "service":
        result = service(clips)
    else:
        result = seed(clips, args.checkpoint, args.beam_size)
    result |= {"started_at": STARTED, "vm_hwm": _vm_hwm()}
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
