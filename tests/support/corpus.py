"""The real recordings in ../shared/audio, the short commands in ../shared/commands, and word
error rate against their references.

Shared by the tests and the benchmark, so both score transcripts the same way.
``CHATSERVER_TEST_AUDIO`` (and ``CHATSERVER_TEST_COMMANDS``) point elsewhere; by default both
sit beside the repository.
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
COMMANDS_DIR = Path(os.environ.get("CHATSERVER_TEST_COMMANDS", AUDIO_DIR.parent / "commands"))


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
# 325 short voice commands in 22 languages, a synthetic voice (its README).
COMMANDS = load_manifest(COMMANDS_DIR)


def clip(name: str) -> Clip:
    return next(c for c in MANIFEST if c.path.name == name)


def normalise(text: str) -> str:
    """Case- and punctuation-insensitive form; apostrophes and hyphens split words."""
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>")


def corpus_wer(references: list[str], hypotheses: list[str]) -> tuple[float, int]:
    """All edits over all reference words, and how many reference words there were."""
    refs = [normalise(r) for r in references]
    words = sum(len(r.split()) for r in refs)
    out = jiwer.process_words(refs, [normalise(h) or "<empty>" for h in hypotheses])
    return (out.substitutions + out.deletions + out.insertions) / words, words
