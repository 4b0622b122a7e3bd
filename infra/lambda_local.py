#!/usr/bin/env python3
"""Run the Lambda handler locally under the real Runtime Interface Emulator, without Docker.

    .venv/bin/python infra/lambda_local.py                    # serve on 127.0.0.1:9000 until Ctrl-C
    curl -s http://127.0.0.1:9000/2015-03-31/functions/function/invocations -d @infra/events/api-v1.json

    # one event, then stop; --audio swaps in another recording as the multipart body
    .venv/bin/python infra/lambda_local.py --invoke infra/events/api-v2.json --audio note.webm

    # K workers fed from an SQS queue, as the chunk queue's event source mapping feeds Lambda
    .venv/bin/python infra/lambda_local.py --workers 2 --queue-url URL --sqs-endpoint http://127.0.0.1:5000

The emulator (aws-lambda-rie) is the binary that ships inside the aws-sam-cli wheel; the
runtime interface client is awslambdaric, as in the Lambda base image, so the handler runs
exactly as in the image: imported once at init, then called once per event. Both bind
127.0.0.1 only. The CHATSERVER_* and AWS_* variables of this shell reach the handler.

The tests import this module, so the script and the suite drive the emulator the same way.
"""

import argparse
import base64
import contextlib
import copy
import ctypes
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "infra" / "events"
HANDLER = "chatserver.aws_lambda.handler.handler"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

_RIE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def _venvs() -> list[Path]:
    # aws-sam-cli lives in its own venv (it pins click below what huggingface-hub needs); a
    # venv that has it installed alongside everything else works too.
    return [REPO / ".venv-sam", Path(sys.prefix)]


def find_rie() -> Path:
    """The aws-lambda-rie binary: $CHATSERVER_RIE, else the aws-sam-cli wheel's, else on PATH."""
    if configured := os.environ.get("CHATSERVER_RIE"):
        return Path(configured)
    name = f"aws-lambda-rie-{_RIE_ARCH.get(platform.machine().lower(), 'x86_64')}"
    for venv in _venvs():
        found = sorted(venv.glob(f"lib/python3*/site-packages/samcli/local/rapid/{name}"))
        if found:
            return found[-1]
    if on_path := shutil.which("aws-lambda-rie"):
        return Path(on_path)
    raise FileNotFoundError(
        f"{name} not found: install aws-sam-cli into .venv-sam (bash infra/install.sh --dev) "
        "or set CHATSERVER_RIE to the emulator binary"
    )


# The Lambda image's Python (3.12) with what infra/image/install.sh installs in the image:
# bash infra/install.sh --dev creates it, and the emulator tests run the handler on it too.
IMAGE_PYTHON = REPO / ".venv-lambda312" / "bin" / "python"
RUNTIMES = ("suite", "image")


def runtime_python(runtime: str) -> str:
    """The interpreter that runs the handler: ``suite`` is this one, ``image`` the image's Python."""
    if runtime == "suite":
        return sys.executable
    if runtime != "image":
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    if not IMAGE_PYTHON.exists():
        raise FileNotFoundError(f"{IMAGE_PYTHON} not found: bash infra/install.sh --dev creates it")
    return str(IMAGE_PYTHON)


def find_sam() -> Path:
    """The sam CLI: $CHATSERVER_SAM, else .venv-sam's, else this venv's, else on PATH."""
    if configured := os.environ.get("CHATSERVER_SAM"):
        return Path(configured)
    for venv in _venvs():
        if (candidate := venv / "bin" / "sam").is_file():
            return candidate
    if on_path := shutil.which("sam"):
        return Path(on_path)
    raise FileNotFoundError("sam not found: bash infra/install.sh --dev, or set CHATSERVER_SAM")


# --- events -----------------------------------------------------------------------------------
def load_event(name: str) -> dict[str, Any]:
    """A sample event from infra/events, by file name."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def multipart_body(audio: bytes, filename: str, fields: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser or ``curl -F`` sends it; returns (body, content type)."""
    boundary = f"chatserver-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in (fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + audio
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def with_audio(
    event: Mapping[str, Any], audio: Path, fields: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``event`` (API Gateway v1 or v2) with ``audio`` as its base64 multipart body.

    API Gateway hands a binary body to Lambda base64-encoded (REST APIs only for the
    BinaryMediaTypes they list), with the browser's Content-Type, boundary included.
    """
    body, content_type = multipart_body(audio.read_bytes(), audio.name, fields)
    result = copy.deepcopy(dict(event))
    result["body"] = base64.b64encode(body).decode("ascii")
    result["isBase64Encoded"] = True
    headers = {
        k: v
        for k, v in (result.get("headers") or {}).items()
        if k.lower() not in ("content-type", "content-length")
    }
    # v1 events spell headers as sent, v2 events lower-case them.
    v2 = result.get("version") == "2.0"
    headers["content-type" if v2 else "Content-Type"] = content_type
    headers["content-length" if v2 else "Content-Length"] = str(len(body))
    result["headers"] = headers
    if "multiValueHeaders" in result:
        multi = {
            k: v
            for k, v in result["multiValueHeaders"].items()
            if k.lower() not in ("content-type", "content-length")
        }
        multi["Content-Type"] = [content_type]
        multi["Content-Length"] = [str(len(body))]
        result["multiValueHeaders"] = multi
    return result


def s3_put_event(bucket: str, key_in_event: str, size: int, etag: str | None = None) -> dict[str, Any]:
    """infra/events/s3-put.json for one object; ``key_in_event`` is URL-encoded, as S3 sends keys."""
    event = load_event("s3-put.json")
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"].update({"key": key_in_event, "size": size})
    if etag is None:
        record["s3"]["object"].pop("eTag", None)
    else:
        record["s3"]["object"]["eTag"] = etag
    return event


def sqs_event(bodies: Mapping[str, str]) -> dict[str, Any]:
    """infra/events/sqs-s3-put.json with one message per (messageId, body)."""
    template = load_event("sqs-s3-put.json")["Records"][0]
    records = []
    for message_id, body in bodies.items():
        record = copy.deepcopy(template)
        record.update({"messageId": message_id, "body": body})
        record.pop("md5OfBody", None)
        records.append(record)
    return {"Records": records}


# --- the emulator ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when the process (thread) that started it exits.

    Linux only (prctl); elsewhere a no-op. Meant for a child's preexec_fn, and for this script
    itself, so that an emulator never outlives whoever started it.
    """
    if _LIBC is None:
        return
    parent = os.getppid()
    # Nothing is imported or loaded here: in a preexec_fn that could deadlock on a lock some
    # other thread of the parent held at fork.
    if _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os.kill(os.getpid(), sig)


def stop_process_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the process group started with start_new_session, SIGKILL it after ``grace_s``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace_s)


@dataclass(frozen=True)
class Report:
    """One REPORT line of the emulator: ``init_ms`` only on the invocation that ran init."""

    request_id: str
    duration_ms: float
    init_ms: float | None


_REPORT = re.compile(
    r"REPORT RequestId: (?P<id>\S+)\s+(?:Init Duration: (?P<init>[\d.]+) ms\s+)?Duration: (?P<dur>[\d.]+) ms"
)
# The emulator's own measure of the init phase (importing the handler module); its REPORT
# line also has an "Init Duration" field, but only on the first invocation.
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: (?P<ms>[\d.]+)\)")


class Emulator:
    """aws-lambda-rie running ``python -m awslambdaric <HANDLER>`` on 127.0.0.1 (HANDLER: the image's CMD)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        timeout_s: int = 300,
        memory_mb: int = 3008,
        python: str = sys.executable,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{INVOKE_PATH}"
        self.log = log
        self.timeout_s = timeout_s
        self._env = {
            **os.environ,
            # Lambda's own variables, as the service sets them for a function.
            "AWS_LAMBDA_FUNCTION_NAME": "chatserver-local",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "LAMBDA_TASK_ROOT": str(REPO / "function"),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO / "function"), os.environ.get("PYTHONPATH")])
            ),
            **(env or {}),
        }
        self._python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.invocations = 0

    def command(self) -> list[str]:
        return [
            str(find_rie()),
            # Both default to every interface (8080) and 127.0.0.1:9001: pin both to loopback
            # ports of our own, so several emulators can run side by side.
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{free_port()}",
            self._python,
            "-m",
            "awslambdaric",
            HANDLER,
        ]

    def start(self, ready_timeout_s: float = 30) -> "Emulator":
        output: TextIO | int | None = None
        if self.log is not None:
            output = self.log.open("ab")  # type: ignore[assignment]
        self.process = subprocess.Popen(
            self.command(),
            cwd=REPO / "function",
            env=self._env,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            # Its own process group: stop() ends the emulator and the runtime it started, and
            # nothing else.
            start_new_session=True,
            # If the thread that started it dies without stop() (SIGKILL, a crash), the kernel
            # ends the emulator, whose runtime then exits on its closed Runtime API.
            preexec_fn=die_with_parent,
        )
        if output is not None:
            output.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"aws-lambda-rie exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"aws-lambda-rie did not listen in {ready_timeout_s} s")
            time.sleep(0.1)

    def stop(self, grace_s: float = 10) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace_s)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def invoke(self, event: Any) -> Any:
        """One synchronous invocation; the handler's return value, or Lambda's error object."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s + 30)
        self.invocations += 1
        try:
            connection.request(
                "POST",
                INVOKE_PATH,
                body=json.dumps(event).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        return json.loads(payload) if payload else None

    def log_text(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def reports(self) -> list[Report]:
        return [
            Report(m["id"], float(m["dur"]), float(m["init"]) if m["init"] else None)
            for m in _REPORT.finditer(self.log_text())
        ]

    def init_reports_ms(self) -> list[float]:
        return [float(m["ms"]) for m in _INIT_REPORT.finditer(self.log_text())]

    def wait_for_reports(self, count: int, timeout_s: float = 10) -> list[Report]:
        """The REPORT lines once there are ``count`` of them (written just after the response)."""
        deadline = time.monotonic() + timeout_s
        while len(reports := self.reports()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return reports


# --- the event source mapping's role, for the chunk queue -------------------------------------
def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as received, in the shape Lambda's SQS event source mapping delivers it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": dict(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _succeeded(answer: Any, message_id: str) -> bool:
    # ReportBatchItemFailures: a message listed in batchItemFailures failed; an error answer
    # (the handler raised, or the runtime died) fails the whole batch.
    if not isinstance(answer, dict) or "errorType" in answer:
        return False
    failures = answer.get("batchItemFailures") or []
    return all(failure.get("itemIdentifier") != message_id for failure in failures)


@dataclass(frozen=True)
class Delivery:
    worker: int
    message_id: str
    receive_count: int
    succeeded: bool
    seconds: float


class Pump:
    """What Lambda's SQS event source mapping does, for K local workers: batch size 1.

    One thread per worker receives a message, invokes its worker with it, deletes it when the
    handler succeeded, and otherwise leaves it to come back when its visibility timeout ends.
    While the invocation runs, the visibility is extended every ``visibility_s / 2``: that
    stands for a queue timeout longer than the function timeout (as template.yaml sets it),
    while a worker that is killed lets its message come back within ``visibility_s``. A dead
    worker is not replaced; its thread ends.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        workers: Sequence[Emulator],
        *,
        visibility_s: int = 10,
        wait_s: int = 1,
        region: str = "us-east-1",
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.workers = list(workers)
        self.visibility_s = visibility_s
        self.wait_s = wait_s
        self.region = region
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        self.queue_arn = attributes["Attributes"]["QueueArn"]
        self.deliveries: list[Delivery] = []
        self.on_delivery: Callable[[int, dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Pump":
        for index in range(len(self.workers)):
            thread = threading.Thread(target=self._serve, args=(index,), name=f"pump-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 30) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def __enter__(self) -> "Pump":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, index: int) -> None:
        worker = self.workers[index]
        while not self._stopping.is_set() and worker.alive():
            try:
                received = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self.wait_s,
                    VisibilityTimeout=self.visibility_s,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:  # the queue's server went away: the pump is being torn down
                if not self._stopping.is_set():
                    sys.stderr.write(f"pump-{index}: receive failed: {exc}\n")
                    time.sleep(1)
                continue
            for message in received.get("Messages", []):
                self._deliver(index, worker, message)

    def _deliver(self, index: int, worker: Emulator, message: dict[str, Any]) -> None:
        if self.on_delivery is not None:
            self.on_delivery(index, message)
        done = threading.Event()
        keeper = threading.Thread(target=self._keep_invisible, args=(worker, message, done), daemon=True)
        keeper.start()
        started = time.monotonic()
        try:
            answer = worker.invoke({"Records": [sqs_record(message, self.queue_arn, self.region)]})
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            answer = None  # the worker died mid-invocation
            # A killed emulator drops its connections before it is reaped: wait for that, so
            # that this thread sees it dead and never takes another message for it.
            if worker.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=10)
        finally:
            done.set()
            keeper.join()
        succeeded = _succeeded(answer, message["MessageId"])
        if succeeded:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        with self._lock:
            self.deliveries.append(
                Delivery(index, message["MessageId"], count, succeeded, time.monotonic() - started)
            )

    def _keep_invisible(self, worker: Emulator, message: dict[str, Any], done: threading.Event) -> None:
        while not done.wait(self.visibility_s / 2):
            if not worker.alive():
                return
            with contextlib.suppress(Exception):
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self.visibility_s,
                )

    def idle(self) -> bool:
        """No message visible or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"])
            + int(attributes["ApproximateNumberOfMessagesNotVisible"])
            == 0
        )


def http_response_body(result: Mapping[str, Any]) -> str:
    """The body of an API Gateway proxy response, decoded if Mangum base64-encoded it."""
    body = result.get("body") or ""
    return base64.b64decode(body).decode() if result.get("isBase64Encoded") else body


# --- command line -----------------------------------------------------------------------------
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000, help="127.0.0.1 port to POST events to (9000)")
    parser.add_argument("--timeout", type=int, default=300, help="function timeout in seconds (300)")
    parser.add_argument(
        "--invoke", type=Path, metavar="EVENT.json", help="send this event, print the answer, stop"
    )
    parser.add_argument("--audio", type=Path, help="with --invoke: this recording as the multipart body")
    parser.add_argument("--language", help="with --audio: the language form field")
    # The HTTP mode lives in lambda_http.py (API Gateway REST events from HTTP requests).
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve HTTP on 127.0.0.1:PORT as API Gateway would"
    )
    parser.add_argument("--stage", default="Prod", help="with --http: the stage path segment; '' for none")
    # The chunk queue's event source mapping (fan-out of long S3 uploads).
    parser.add_argument("--workers", type=int, metavar="K", help="K emulators on --port, --port + 1, ...")
    parser.add_argument("--queue-url", help="with --workers: the SQS queue to feed them from")
    parser.add_argument("--sqs-endpoint", help="with --workers: the SQS endpoint (a moto server's URL)")
    parser.add_argument("--region", default="us-east-1", help="with --workers: the queue's region")
    return parser.parse_args(argv)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # SIGTERM (a service manager, `kill`, a test's terminate()) and the exit of whoever started
    # this script end it as Ctrl-C does: every emulator's context exits and stops its process
    # group, so no emulator or runtime is left holding a port.
    signal.signal(signal.SIGTERM, _interrupt)
    die_with_parent(signal.SIGTERM)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _run_workers(args: argparse.Namespace) -> int:
    import boto3

    if not args.queue_url:
        raise SystemExit("--workers needs --queue-url")
    sqs = boto3.client("sqs", endpoint_url=args.sqs_endpoint, region_name=args.region)
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(Emulator(port=args.port + k, timeout_s=args.timeout))
            for k in range(args.workers)
        ]
        pump = stack.enter_context(Pump(sqs, args.queue_url, workers, region=args.region))
        _out(
            f"{len(workers)} workers on 127.0.0.1:{args.port}-{args.port + len(workers) - 1}, "
            f"fed from {args.queue_url}"
        )
        while any(worker.alive() for worker in workers):
            time.sleep(1)
        _out(f"every worker exited; {len(pump.deliveries)} messages delivered")
    return 1


def _run(args: argparse.Namespace) -> int:
    if args.workers:
        return _run_workers(args)
    if args.http is not None:
        from lambda_http import serve  # here, not at the top: lambda_http imports this module

        return serve(args.http, args.stage, args.timeout)
    emulator = Emulator(port=args.port, timeout_s=args.timeout)
    if args.invoke is None:
        _out(f"aws-lambda-rie: POST events to {emulator.url} (Ctrl-C stops it), e.g.")
        _out(f"  curl -s {emulator.url} -d @infra/events/api-v1.json")
        with emulator, contextlib.suppress(KeyboardInterrupt):
            if emulator.process is not None:
                emulator.process.wait()
        return 0
    event = json.loads(args.invoke.read_text(encoding="utf-8"))
    if args.audio is not None:
        event = with_audio(event, args.audio, {"language": args.language} if args.language else None)
    with emulator:
        result = emulator.invoke(event)
    if isinstance(result, dict) and "statusCode" in result:
        _out(f"HTTP {result['statusCode']}")
        _out(http_response_body(result))
    else:
        _out(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
