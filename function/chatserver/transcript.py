"""The transcript types every engine returns, and their renderers (json, text, srt, vtt, verbose_json)."""

from enum import StrEnum

from pydantic import BaseModel, Field


class Segment(BaseModel):
    start: float = Field(description="Seconds from the start of the audio.")
    end: float
    text: str


class Transcript(BaseModel):
    text: str
    language: str = Field(description="ISO 639-1 code, given or detected.")
    duration: float = Field(description="Seconds of audio transcribed.")
    segments: list[Segment]


class ResponseFormat(StrEnum):
    json = "json"
    text = "text"
    srt = "srt"
    vtt = "vtt"
    verbose_json = "verbose_json"


class TranscriptionResponse(BaseModel):
    """The seed's contract: ``transcript`` stays, ``language`` and ``duration`` were added."""

    transcript: str
    language: str
    duration: float


class VerboseTranscriptionResponse(TranscriptionResponse):
    segments: list[Segment]


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript) -> str:
    blocks = [
        f"{index}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for index, s in enumerate(transcript.segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in transcript.segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_response(transcript: Transcript, verbose: bool) -> TranscriptionResponse:
    fields = {
        "transcript": transcript.text,
        "language": transcript.language,
        "duration": transcript.duration,
    }
    if verbose:
        return VerboseTranscriptionResponse(**fields, segments=transcript.segments)
    return TranscriptionResponse(**fields)
