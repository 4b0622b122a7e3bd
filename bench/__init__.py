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
# tests/speech.py (clips, WER), tests/servers.py and tests/loadgen.py serve the suite and the
# benchmark alike, as does infra/lambda_local.py (the Runtime Interface Emulator): one copy each.
for _helpers in (_REPO / "tests", _REPO / "infra"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))
