"""The Lambda handler under the real runtime: aws-lambda-rie + awslambdaric, events as AWS sends them.

One emulator serves the whole module, as one execution environment serves many events: the
model loads once at init, and every test after the first runs warm. S3 is a moto server on
127.0.0.1. The emulator comes from the aws-sam-cli wheel (infra/emulation/runtimes.py finds it).
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from emulation import runtimes
from emulation.emulator import Emulator
from emulation.events import http_response_body, load_event, s3_put_event, sqs_event, with_audio
from tests.support import REPO
from tests.support.corpus import clip, normalise, wer
from tests.support.s3 import moto_server
from tests.support.servers import installed, require_emulator

# The module needs the emulator (require_emulator below); the tests on ``fn`` a moto server too.
pytestmark = pytest.mark.emulator

BUCKET = "chatserver-rie-test"
REGION = "eu-west-1"
JFK = clip("jfk.flac")
ONE_TWO_THREE = clip("sr_english.wav")
# Whisper writes the three words as digits or as words, depending on decoding.
ONE_TWO_THREE_TEXTS = {"one two three", "1 2 3"}

require_emulator()


@dataclass
class Lambda:
    emulator: Emulator
    s3: object  # a boto3 S3 client on the moto server


@pytest.fixture(scope="module")
def fn(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> Iterator[Lambda]:
    # A fresh server for each runtime: the reset empties what the other runtime's run left.
    with moto_server() as moto:
        s3 = moto.client("s3", region=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        log = tmp_path_factory.mktemp("rie") / "rie.log"
        emulator = Emulator(
            log=log,
            python=runtime,
            timeout_s=120,
            env={
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "CHATSERVER_BUCKET": BUCKET,
                "CHATSERVER_S3_ENDPOINT_URL": moto.endpoint,
                "CHATSERVER_LOG_JSON": "true",
                # Greedy decoding: these tests are about the runtime, not about accuracy, and
                # the machine is shared.
                "CHATSERVER_BEAM_SIZE": "1",
            },
        )
        try:
            emulator.start()
            yield Lambda(emulator, s3)
        finally:
            emulator.stop()


def _json_log_lines(emulator: Emulator) -> list[dict]:
    lines = []
    for line in emulator.log_text().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def _transcribe(fn: Lambda, event: dict) -> dict:
    result = fn.emulator.invoke(event)
    assert result.get("statusCode") == 200, result
    return json.loads(http_response_body(result))


@pytest.mark.s3server
def test_rest_api_v1_event_with_base64_multipart_body(fn: Lambda) -> None:
    event = with_audio(load_event("api-v1.json"), JFK.path)
    assert event["isBase64Encoded"] is True
    body = _transcribe(fn, event)
    assert body["language"] == "en"
    assert wer(JFK.reference, body["transcript"]) < 0.1, body


@pytest.mark.s3server
def test_http_api_v2_event_with_a_stage_prefixed_path(fn: Lambda) -> None:
    event = with_audio(load_event("api-v2.json"), JFK.path, {"language": "en"})
    assert event["rawPath"] == "/prod/transcribe"  # a named stage stays in the path
    result = fn.emulator.invoke(event)
    assert result["statusCode"] == 200, result
    assert wer(JFK.reference, json.loads(http_response_body(result))["transcript"]) < 0.1
    # Lambda's request id is the one the app answers with and logs under.
    request_id = result["headers"]["x-request-id"]
    access = [line for line in _json_log_lines(fn.emulator) if line.get("name") == "chatserver.access"]
    assert any(
        line["request_id"] == request_id and line["route"] == "/prod/transcribe" and line["time_s"] > 0
        for line in access
    ), access


@pytest.mark.s3server
def test_committed_sample_events_transcribe_as_they_are(fn: Lambda) -> None:
    for name in ("api-v1.json", "api-v2.json"):
        body = _transcribe(fn, load_event(name))
        assert normalise(body["transcript"]) in ONE_TWO_THREE_TEXTS, (name, body)


def _result(fn: Lambda, key: str) -> dict:
    return json.loads(fn.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.mark.s3server
def test_s3_put_event_writes_the_result_to_the_bucket(fn: Lambda) -> None:
    key = "uploads/jfk speech.flac"
    put = fn.s3.put_object(Bucket=BUCKET, Key=key, Body=JFK.path.read_bytes())
    # S3 sends keys URL-encoded, with '+' for spaces.
    event = s3_put_event(BUCKET, "uploads/jfk+speech.flac", JFK.path.stat().st_size, put["ETag"].strip('"'))
    answer = fn.emulator.invoke(event)
    assert "errorType" not in (answer or {}), answer
    result = _result(fn, "transcripts/jfk speech.flac.json")
    assert result["status"] == "completed", result
    assert wer(JFK.reference, result["text"]) < 0.1, result
    # The job's log lines name the object, and the service's line has the audio duration.
    lines = [line for line in _json_log_lines(fn.emulator) if line.get("object_key") == key]
    assert any(line.get("audio_duration_s") == pytest.approx(JFK.duration, abs=0.1) for line in lines), lines
    assert any("time_s" in line for line in lines), lines


# botocore refuses this bucket name before sending anything: a failure that is not a result
# the runner could write, as an S3 outage would be.
UNREACHABLE_BUCKET = "not/a/bucket"


@pytest.mark.s3server
def test_s3_event_that_fails_raises_so_lambda_retries_it(fn: Lambda) -> None:
    event = s3_put_event(UNREACHABLE_BUCKET, "uploads/x.webm", 10)
    answer = fn.emulator.invoke(event)
    # An error answer, not a success with an error inside: Lambda retries an asynchronous
    # event that raised, then sends it to the on-failure destination.
    assert answer["errorType"] == "ParamValidationError", answer
    assert fn.emulator.alive()


@pytest.mark.s3server
def test_sqs_wrapped_s3_events_report_only_the_failed_message(fn: Lambda) -> None:
    key = "uploads/one two three.wav"
    put = fn.s3.put_object(Bucket=BUCKET, Key=key, Body=ONE_TWO_THREE.path.read_bytes())
    good = s3_put_event(
        BUCKET, "uploads/one+two+three.wav", ONE_TWO_THREE.path.stat().st_size, put["ETag"].strip('"')
    )
    bad = s3_put_event(UNREACHABLE_BUCKET, "uploads/y.webm", 10)
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}
    event = sqs_event(
        {"m-good": json.dumps(good), "m-bad": json.dumps(bad), "m-test": json.dumps(test_event)}
    )
    answer = fn.emulator.invoke(event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    result = _result(fn, "transcripts/one two three.wav.json")
    assert result["status"] == "completed", result
    assert normalise(result["text"]) in ONE_TWO_THREE_TEXTS, result


def _rest_event(method: str, path: str, body: str | None = None, content_type: str | None = None) -> dict:
    """A REST API (v1) event for ``path`` under the Prod stage, as API Gateway builds it."""
    event = load_event("api-v1.json") | {"path": path, "httpMethod": method, "resource": path}
    event.update(body=body, isBase64Encoded=False)
    headers = {k: v for k, v in event["headers"].items() if not k.lower().startswith("content-")}
    if content_type:
        headers["Content-Type"] = content_type
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    event["requestContext"].update(path=f"/Prod{path}", httpMethod=method, resourcePath=path)
    return event


@pytest.mark.s3server
def test_job_through_the_api_and_the_bucket(fn: Lambda) -> None:
    created = fn.emulator.invoke(
        _rest_event("POST", "/jobs", "language=en", "application/x-www-form-urlencoded")
    )
    assert created["statusCode"] == 201, created
    job = json.loads(created["body"])
    # Built by the app from the request: the stage the client called is in it.
    host = load_event("api-v1.json")["headers"]["Host"]
    assert job["status_url"] == f"https://{host}/Prod/jobs/{job['job_id']}"
    put = fn.s3.put_object(
        Bucket=BUCKET,
        Key=job["upload_key"],
        Body=ONE_TWO_THREE.path.read_bytes(),
        Metadata={"language": "en"},
    )
    fn.emulator.invoke(
        s3_put_event(BUCKET, job["upload_key"], ONE_TWO_THREE.path.stat().st_size, put["ETag"].strip('"'))
    )
    status = fn.emulator.invoke(_rest_event("GET", f"/jobs/{job['job_id']}"))
    assert status["statusCode"] == 200, status
    result = json.loads(status["body"])
    assert result["status"] == "completed", result
    assert normalise(result["text"]) in ONE_TWO_THREE_TEXTS


@pytest.mark.s3server
def test_unknown_event_is_refused_and_the_runtime_stays_up(fn: Lambda) -> None:
    answer = fn.emulator.invoke({"hello": "world"})
    assert answer["errorType"] == "UnsupportedEvent", answer
    assert "hello" in answer["errorMessage"]
    assert any(
        line.get("level") == "ERROR" and "unknown shape" in line["message"]
        for line in _json_log_lines(fn.emulator)
    )
    assert fn.emulator.alive()
    health = load_event("api-v2.json") | {"body": None, "isBase64Encoded": False, "rawPath": "/prod/health"}
    health["headers"] = {k: v for k, v in health["headers"].items() if not k.startswith("content-")}
    health["requestContext"]["http"].update(method="GET", path="/prod/health")
    result = fn.emulator.invoke(health)
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["status"] == "ok"


@pytest.mark.s3server
def test_model_loaded_once_and_cold_start_reported(
    fn: Lambda, record_property, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = fn.emulator.wait_for_reports(count=fn.emulator.invocations)
    assert len(reports) == fn.emulator.invocations >= 1, fn.emulator.log_text()[-3000:]
    # One init for every invocation of the module: only the first REPORT has an Init Duration,
    # the emulator ran one init phase, and the engine was loaded once.
    cold = [report for report in reports if report.init_ms is not None]
    assert len(cold) == 1, reports
    assert cold[0] == reports[0], reports
    init_phase = fn.emulator.init_reports_ms()
    assert len(init_phase) == 1, init_phase
    loads = [line for line in _json_log_lines(fn.emulator) if line.get("name") == "chatserver.speech.engines"]
    assert len(loads) == 1, loads
    record_property("init_phase_ms", init_phase[0])
    record_property("report_init_duration_ms", cold[0].init_ms)
    record_property("first_invocation_ms", cold[0].duration_ms)
    with capsys.disabled():
        sys.stdout.write(
            f"\n[lambda cold start under aws-lambda-rie] init phase (INIT REPORT durationMs): "
            f"{init_phase[0]:.0f} ms; REPORT 'Init Duration': {cold[0].init_ms} ms; first invocation "
            f"(init + jfk.flac): {cold[0].duration_ms:.0f} ms; warm invocations: "
            f"{', '.join(f'{r.duration_ms:.0f}' for r in reports[1:])} ms\n"
        )


# --- infra/lambda_local.py as a script: nothing outlives it (issue 10.7) -----------------------
_SCRIPT = [sys.executable, str(REPO / "infra" / "lambda_local.py")]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_listening(port: int, script: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert script.poll() is None, f"lambda_local.py exited with {script.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {port} in {timeout_s} s")


def _emulator_and_runtime(script_pid: int) -> list[psutil.Process]:
    return psutil.Process(script_pid).children(recursive=True)


def _all_gone(processes: list[psutil.Process], timeout_s: float = 20) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return alive


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "parent exits"])
def test_script_stops_its_emulator_and_runtime(how: str, tmp_path: Path) -> None:
    port = runtimes.free_port()
    command = [*_SCRIPT, "--port", str(port), "--timeout", "60"]
    log = (tmp_path / "script.log").open("wb")
    if how == "parent exits":
        # A parent that starts the script and is then SIGKILLed: it cannot clean anything up.
        parent = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import subprocess, time; subprocess.Popen({command!r}); time.sleep(600)",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not (children := psutil.Process(parent.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.1)
        script_pid = children[0].pid
        script = parent  # for _wait_listening's liveness check: the parent lives until killed
    else:
        script = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        script_pid = script.pid
    try:
        _wait_listening(port, script)
        # One invocation, so that the runtime (awslambdaric, the handler, the model) is running too.
        answer = Emulator(port=port).invoke({"hello": "world"})
        assert answer["errorType"] == "UnsupportedEvent", answer
        processes = _emulator_and_runtime(script_pid)
        names = " ".join(" ".join(p.cmdline()) for p in processes)
        assert "aws-lambda-rie" in names, names
        assert "awslambdaric" in names, names
        if how == "parent exits":
            parent.kill()
            parent.wait(10)
        else:
            os.kill(script_pid, getattr(signal, how))
        left = _all_gone([*processes, psutil.Process(script_pid)])
        assert not left, [p.cmdline() for p in left]
        assert _port_free(port)
    finally:
        for pid in (script.pid, script_pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        log.close()


def test_image_python_is_the_images_version_with_the_runtime_pins() -> None:
    python = installed(lambda: runtimes.runtime_python("image"))
    image_tag = re.search(r"^FROM \S+/lambda/python:(\d+\.\d+)\.", (REPO / "Dockerfile").read_text(), re.M)
    assert image_tag, "the Dockerfile's base image has no python:X.Y tag"
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert version == image_tag[1]
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    in_image = {
        name.lower().replace("_", "-"): pinned
        for name, pinned in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", frozen, re.M)
    }
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "function" / "requirements.txt").read_text(), re.M
    )
    assert pins
    for name, pinned in pins:
        assert in_image.get(name.lower().replace("_", "-")) == pinned, (name, pinned)
