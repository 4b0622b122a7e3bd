"""The machine and software a run was measured on, for the report's header."""

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from .common import REPO

PACKAGES = (
    "faster-whisper",
    "ctranslate2",
    "openai-whisper",
    "torch",
    "numpy",
    "fastapi",
    "starlette",
    "uvicorn",
    "mangum",
    "awslambdaric",
    "imageio-ffmpeg",
)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_quota() -> str | None:
    """A cgroup v2 CPU limit, where the container has one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else f"{int(quota) / int(period):g} CPUs (cgroup)"


def _ffmpeg_version() -> str:
    import imageio_ffmpeg

    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False
    ).stdout
    return out.splitlines()[0] if out else "unknown"


def _git() -> str:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = run("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" (uncommitted changes)" if run("status", "--porcelain", "--untracked-files=no") else "")


def describe() -> dict[str, str]:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    memory = psutil.virtual_memory().total / 1024**3
    cores = f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable"
    if quota := _cpu_quota():
        cores += f", {quota}"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": cores,
        "memory": f"{memory:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "ffmpeg": _ffmpeg_version(),
        "packages": ", ".join(versions),
        "commit": _git(),
    }


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
