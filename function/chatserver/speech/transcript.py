"""The transcript types every engine returns, and their renderers (json, text, srt, vtt, verbose_json)."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Segment(BaseModel):
    """The public segment of /transcribe's verbose_json and of S3 result documents."""

    start: float = Field(description="Seconds from the start of the audio.")
    end: float
    text: str


class Word(BaseModel):
    word: str
    start: float
    end: float
    probability: float = 1.0


class DecodedSegment(Segment):
    """What an engine knows about a segment; the OpenAI-compatible verbose_json shows all of it."""

    seek: int = Field(default=0, description="Offset of the segment's window, in 10 ms frames.")
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] | None = None

    def public(self) -> Segment:
        return Segment(start=self.start, end=self.end, text=self.text)

    def shifted(self, seconds: float) -> "DecodedSegment":
        """The same segment on a longer recording's timeline, ``seconds`` later."""
        words = None
        if self.words is not None:
            words = [
                w.model_copy(update={"start": w.start + seconds, "end": w.end + seconds}) for w in self.words
            ]
        return self.model_copy(
            update={
                "start": self.start + seconds,
                "end": self.end + seconds,
                "seek": self.seek + round(seconds * 100),
                "words": words,
            }
        )

    def spanning(self, start: float, end: float) -> "DecodedSegment":
        """The segment set to span ``start``-``end``, its words kept inside.

        A one-run piece's segment spans the run of speech (no timestamp tokens to say more);
        word alignment can put the first word in the silence the piece was widened into, and a
        client reads a segment's words inside the segment.
        """

        def inside(t: float) -> float:
            return min(max(t, start), end)

        words = self.words and [
            w.model_copy(update={"start": inside(w.start), "end": inside(w.end)}) for w in self.words
        ]
        return self.model_copy(update={"start": start, "end": end, "words": words})


class Transcript(BaseModel):
    text: str
    language: str = Field(description="ISO 639-1 code, given or detected.")
    duration: float = Field(description="Seconds of audio transcribed.")
    segments: list[DecodedSegment]

    @classmethod
    def of_segments(cls, segments: list[DecodedSegment], language: str, duration: float) -> "Transcript":
        # Whisper's segments carry their own leading space where the language has spaces, and
        # none in Chinese or Japanese: joined as they are, never with one of ours.
        text = "".join(s.text for s in segments).strip()
        return cls(text=text, language=language, duration=round(duration, 3), segments=segments)

    def public_segments(self) -> list[Segment]:
        return [s.public() for s in self.segments]


class ResponseFormat(StrEnum):
    json = "json"
    text = "text"
    srt = "srt"
    vtt = "vtt"
    verbose_json = "verbose_json"

    @classmethod
    def _missing_(cls, value: object) -> "ResponseFormat | None":
        # Case-insensitive, as language is: "JSON" and "Text" are what people type.
        if isinstance(value, str):
            return cls.__members__.get(value.strip().lower())
        return None


class TranscriptionResponse(BaseModel):
    """The seed's contract: ``transcript`` stays, ``language`` and ``duration`` were added."""

    transcript: str
    language: str
    duration: float


class VerboseTranscriptionResponse(TranscriptionResponse):
    segments: list[Segment]


# word_timestamps=true adds the words; without it the responses above stay the seed's, byte
# for byte.
class TranscriptionWithWords(TranscriptionResponse):
    words: list[Word] = Field(description="Every word with its start and end, in order.")


class VerboseTranscriptionWithWords(VerboseTranscriptionResponse):
    words: list[Word] = Field(description="Every word with its start and end, in order.")


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


def render_text(transcript: Transcript, response_format: str) -> tuple[str, str] | None:
    """Body and media type of the plain-text formats (text, srt, vtt); None for the JSON ones.

    /transcribe and /v1 name their formats alike, so both routes render text here.
    """
    match response_format:
        case "text":
            return transcript.text, "text/plain"
        case "srt":
            return to_srt(transcript), "text/plain"
        case "vtt":
            return to_vtt(transcript), "text/vtt"
    return None


def to_response(transcript: Transcript, verbose: bool, words: bool = False) -> TranscriptionResponse:
    fields: dict[str, Any] = {
        "transcript": transcript.text,
        "language": transcript.language,
        "duration": transcript.duration,
    }
    if verbose:
        fields["segments"] = transcript.public_segments()
    if words:
        fields["words"] = [w for s in transcript.segments for w in s.words or ()]
        return (VerboseTranscriptionWithWords if verbose else TranscriptionWithWords)(**fields)
    return (VerboseTranscriptionResponse if verbose else TranscriptionResponse)(**fields)
