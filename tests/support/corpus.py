"""The real recordings in ../shared/audio and word error rate against their references.

Shared by the tests and the benchmark, so both score transcripts the same way.
``CHATSERVER_TEST_AUDIO`` points elsewhere; by default the recordings sit beside the repository.
"""

import csv
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import jiwer

from tests.support import REPO

AUDIO_DIR = Path(os.environ.get("CHATSERVER_TEST_AUDIO", REPO.parent / "shared" / "audio"))


@dataclass(frozen=True)
class Clip:
    path: Path
    language: str
    duration: float
    reference: str


def load_manifest(audio_dir: Path = AUDIO_DIR) -> list[Clip]:
    with (audio_dir / "manifest.tsv").open(encoding="utf-8") as handle:
        return [
            Clip(audio_dir / row["file"], row["language"], float(row["duration_s"]), row["reference"])
            for row in csv.DictReader(handle, delimiter="\t")
        ]


MANIFEST = load_manifest()


def clip(name: str) -> Clip:
    return next(c for c in MANIFEST if c.path.name == name)


def normalise(text: str) -> str:
    """Case- and punctuation-insensitive form; apostrophes and hyphens split words."""
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>")
