"""Where the emulator, the image's Python and the sam CLI are, and child processes that never outlive us."""

import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

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
