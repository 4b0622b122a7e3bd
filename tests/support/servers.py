"""Real servers for tests: uvicorn on loopback (bounded start-up, stopped by PID), and the
guard for what infra/install.sh --dev installs (the emulator, the image's Python, sam)."""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from emulation import runtimes
from emulation.runtimes import free_port, stop_process_group
from tests.support import REPO

__all__ = [
    "REPO",
    "Server",
    "free_port",
    "installed",
    "require_emulator",
    "runtimes",
    "stop_process_group",
    "uvicorn_server",
]

T = TypeVar("T")


def installed(find: Callable[[], T]) -> T:
    """What ``find`` finds; where it raises FileNotFoundError, the test fails in CI (which runs
    infra/install.sh --dev, so a missing tool is a broken install there) and skips elsewhere,
    with the reason. At a module's top level it skips the whole module."""
    try:
        return find()
    except FileNotFoundError as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing), allow_module_level=True)


def require_emulator() -> Path:
    """The Runtime Interface Emulator (aws-lambda-rie, from the aws-sam-cli wheel in .venv-sam),
    or a skip outside CI: call it at the top of a module whose tests all run the emulator."""
    return installed(runtimes.find_rie)


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log: Path
    started_at: float  # time.time() just before the process started
    ready_at: float = 0.0  # time.time() of the first /health 200


@contextlib.contextmanager
def uvicorn_server(
    env: dict[str, str], log: Path, start_timeout_s: float = 120, poll_s: float = 0.2
) -> Iterator[Server]:
    """``python -m chatserver`` (uvicorn) on a free 127.0.0.1 port with ``env`` added.

    ``poll_s`` is how often /health is tried: the benchmark polls finely to time cold starts.
    """
    port = free_port()
    started_at = time.time()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            # The README's server entry: uvicorn with our read deadlines (chatserver/server.py).
            [sys.executable, "-m", "chatserver", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, log, started_at)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    server.ready_at = time.time()
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn not ready in {start_timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(poll_s)
        yield server
    finally:
        stop_process_group(process)
