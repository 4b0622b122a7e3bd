"""Helpers shared by the tests and the benchmark (bench/ imports them as ``tests.support...``).

- ``corpus``: the recordings of ../shared/audio (manifest, references), normalise and WER;
- ``long_audio``: long recordings built in the run by joining those clips with silences;
- ``servers``: uvicorn on loopback, the emulator-or-skip guard, infra/emulation's process helpers;
- ``s3``: a moto server on loopback, S3 event records and look-ups, fake AWS credentials;
- ``engines``: stand-ins for the engine (a wrapper of the real one, a stub with set timings);
- ``http``: the documented error body; ``browser``: headless Chromium; ``loadgen``: closed-loop load;
- ``receiver``: a callback receiver (http.server on 127.0.0.1) recording what S3 jobs POST to it.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

__all__ = ["REPO"]
