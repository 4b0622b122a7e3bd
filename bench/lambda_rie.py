"""(b) the Lambda handler under the Runtime Interface Emulator, with API Gateway v2 events.

The emulator, its events and its REPORT lines come from infra/lambda_local.py, the same
launcher the suite uses (tests/aws_lambda/test_lambda_rie.py).
"""

import json
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from emulation.emulator import Emulator
from emulation.events import http_response_body, load_event, with_audio

from .common import Clip, PeakRss, TargetResult, score, service_env, tree_cpu_s, vm_hwm


def _invoke(emulator: Emulator, clip: Clip) -> tuple[float, str]:
    event = with_audio(load_event("api-v2.json"), clip.path)
    started = time.perf_counter()
    result = emulator.invoke(event)
    elapsed = time.perf_counter() - started
    if not isinstance(result, dict) or result.get("statusCode") != 200:
        raise RuntimeError(f"{clip.path.name}: {str(result)[:300]}")
    return elapsed, json.loads(http_response_body(result))["transcript"]


def _runtime(emulator: Emulator) -> psutil.Process:
    """The runtime the emulator started (python -m awslambdaric): the Lambda function itself."""
    assert emulator.process is not None
    children = psutil.Process(emulator.process.pid).children()
    if len(children) != 1:
        raise RuntimeError(f"expected one runtime process under the emulator, found {children}")
    return children[0]


def lambda_handler(clips: Sequence[Clip], warmup: Clip, env: dict[str, str], workdir: Path) -> TargetResult:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    emulator = Emulator(env=service_env(env, workdir / "tmp"), log=workdir / "rie.log", timeout_s=600)
    started = time.time()
    with emulator:
        assert emulator.process is not None
        # Sample the emulator's descendants only: the emulator is not part of a real Lambda.
        with PeakRss(emulator.process.pid, include_root=False) as rss:
            _invoke(emulator, warmup)
            first_answer = time.time()
            runtime = _runtime(emulator)
            cpu_before = tree_cpu_s(runtime)
            walls, texts = [], []
            for clip in clips:
                wall, text = _invoke(emulator, clip)
                walls.append(wall)
                texts.append(text)
            cpu = tree_cpu_s(runtime) - cpu_before
            peak = max(rss.peak, vm_hwm(runtime.pid))
        reports = emulator.wait_for_reports(count=emulator.invocations)
    result = TargetResult(
        key="b",
        label="(b) Lambda handler under the RIE",
        runs=score(clips, walls, texts),
        cpu_s=cpu,
        cold_start_s=first_answer - started,
        peak_rss_bytes=peak,
    )
    # The emulator initialises on the first invocation: its INIT REPORT times the init phase
    # (imports, model, app), and that first REPORT's Duration includes it.
    init_phase = emulator.init_reports_ms()
    if init_phase:
        result.ready_s = init_phase[0] / 1000
    if reports:
        result.notes.append(
            f"emulator: init phase {init_phase[0] if init_phase else float('nan'):.0f} ms (INIT REPORT); "
            f"first invocation {reports[0].duration_ms:.0f} ms (REPORT Duration, init included)"
        )
    return result
