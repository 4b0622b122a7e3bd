"""A fanned-out job's parts: one chunk's transcript each, and their merge into one transcript."""

from collections.abc import Iterable

from pydantic import BaseModel

from ..speech.transcript import DecodedSegment, Transcript


class PartResult(BaseModel):
    """One chunk's transcript, its segments already on the recording's timeline."""

    index: int
    start: float
    end: float
    language: str
    text: str
    segments: list[DecodedSegment]

    @classmethod
    def of_chunk(cls, index: int, start: float, end: float, transcript: Transcript) -> "PartResult":
        """A chunk's transcript (on the chunk's own timeline, from 0) as a part of the recording."""
        return cls(
            index=index,
            start=start,
            end=end,
            language=transcript.language,
            text=transcript.text,
            segments=[segment.shifted(start) for segment in transcript.segments],
        )


def merge(parts: Iterable[PartResult], language: str, duration: float) -> Transcript:
    """The parts in chunk order, each in its own order, as one transcript of the recording.

    The text is built as one pass builds it (``Transcript.of_segments``): a space added between
    chunks would be wrong in Chinese or Japanese.
    """
    ordered = sorted(parts, key=lambda part: part.index)
    return Transcript.of_segments([s for part in ordered for s in part.segments], language, duration)
