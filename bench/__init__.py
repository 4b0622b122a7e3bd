"""ChatServer's benchmark: ``python -m bench`` (see bench/__main__.py for the options).

Side by side, on the same weights and the same recordings: (a) the service over HTTP,
(b) the Lambda handler under the Runtime Interface Emulator, (c) the bare engine on decoded
audio (the floor) and (d) the seed's pipeline (openai-whisper fp32, FFmpeg to a temp .wav,
one call per file); then the settings that trade speed for accuracy, RSS over 200
requests, and a closed-loop load test. Results go to bench/results/ as Markdown.
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
# tests/support/ (clips and WER, long recordings, uvicorn servers, load) serves the suite and the
# benchmark alike, imported as tests.support.* from the repository root that ``python -m bench``
# runs in; so does infra/emulation (the Runtime Interface Emulator): one copy each.
if str(_REPO / "infra") not in sys.path:
    sys.path.insert(0, str(_REPO / "infra"))
