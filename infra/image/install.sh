#!/bin/sh
# Installs the function's pinned runtime into the Lambda image's Python. The Dockerfile runs
# it as `sh infra/image/install.sh` from a copy of the repository layout; the test suite runs
# the very same script with pip's --dry-run (and the image's Python version and platform)
# appended, so every pip command here is checked to resolve.
#
#   ENGINE=faster-whisper (default)  function/requirements.txt
#   ENGINE=openai-whisper            also a CPU-only torch from TORCH_INDEX_URL (no CUDA, no
#                                    triton), the packages openai-whisper uses, and
#                                    openai-whisper itself with --no-deps (its metadata asks
#                                    for triton and an unpinned torch)
#
# Arguments are passed to every `pip install` (the suite's --dry-run, --python-version ...).
set -eu

ENGINE="${ENGINE:-faster-whisper}"
PYTHON="${PYTHON:-python}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
PYPI_INDEX_URL="${PYPI_INDEX_URL:-https://pypi.org/simple}"

pip_install() {
    "$PYTHON" -m pip install --no-cache-dir --disable-pip-version-check --no-input "$@"
}

# Wheels only: the image has no compiler, and no step may build native code.
pip_install --only-binary=:all: -r function/requirements.txt "$@"

case "$ENGINE" in
    faster-whisper) ;;
    openai-whisper)
        # Plain sh, no sed: the Lambda base image is minimal.
        torch_version=
        while IFS= read -r line; do
            case "$line" in
                torch==*) torch_version=${line#torch==} && torch_version=${torch_version%%[ ;#]*} ;;
            esac
        done < function/requirements-openai-whisper.txt
        if [ -z "$torch_version" ]; then
            echo "install.sh: no torch==VERSION pin in function/requirements-openai-whisper.txt" >&2
            exit 1
        fi
        # One resolution: torch is asked for as "+cpu", which only the CPU index has, so pip
        # cannot take PyPI's CUDA build; the rest comes from PyPI, kept at the runtime's pins.
        pip_install --only-binary=:all: \
            --index-url "$TORCH_INDEX_URL" --extra-index-url "$PYPI_INDEX_URL" \
            --constraint function/requirements.txt \
            "torch==${torch_version}+cpu" -r function/requirements-openai-whisper.txt "$@"
        pip_install --no-deps -r function/requirements-openai-whisper-nodeps.txt "$@"
        ;;
    *)
        echo "install.sh: ENGINE must be faster-whisper or openai-whisper, not '$ENGINE'" >&2
        exit 2
        ;;
esac
