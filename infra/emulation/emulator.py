"""aws-lambda-rie and awslambdaric running the handler on 127.0.0.1: one Lambda execution environment."""

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .runtimes import REPO, die_with_parent, find_rie, free_port, stop_process_group

HANDLER = "chatserver.aws_lambda.handler.handler"  # the image's CMD
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


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
