"""The signs that a sized window's decode went wrong, and the tokens it may decode (faster.py).

Where a sign shows, the piece is decoded again as the bare engine decodes it (README, "How a
recording is cut and decoded", step 6).
"""

import math
import re

from ..transcript import DecodedSegment, Transcript
from .base import TranscribeOptions

# Whisper's own thresholds (openai-whisper's transcribe defaults): a window whose text repeats
# itself or that the model is unsure of is a likely hallucination.
_MAX_COMPRESSION_RATIO = 2.4
_MIN_AVG_LOGPROB = -1.0

# Tokens a sized window may decode from a piece of d seconds: 32 + 20 per second, twice the
# fastest rate of the 355 references of ../shared/commands and ../shared/audio up to 15 s
# (Mongolian, 9.9 tokens a second of audio; French 7.1, English 6.2). A window that loops ("turn
# the lights on turn the lights on ...", 212 tokens for 2.2 s) stops there, instead of at
# Whisper's 224, and goes to the full window. Past ~9.6 s the bound is Whisper's own.
_TOKENS_BASE = 32
_TOKENS_PER_SECOND = 20
_WHISPER_MAX_TOKENS = 224  # what Whisper decodes at most in one window: half its 448 positions


def suspicious(segments: list[DecodedSegment]) -> bool:
    """Whisper's own signs that a window went wrong (openai-whisper's fallback thresholds), and
    a phrase said over and over, which a text of a few words repeats without reaching the
    compression ratio's threshold ("Serra con llave puerta principal." twice for once)."""
    if not segments:
        return True  # the VAD heard speech in this piece; an empty window is a miss
    if repeated_phrase("".join(s.text for s in segments)):
        return True
    return any(
        s.compression_ratio > _MAX_COMPRESSION_RATIO or s.avg_logprob < _MIN_AVG_LOGPROB for s in segments
    )


def repeated_phrase(text: str) -> bool:
    """Whether ``text`` is one phrase two times or more, word for word (case and punctuation aside)."""
    words = re.findall(r"\w+", text.casefold())
    n = len(words)
    return any(n % size == 0 and words == words[:size] * (n // size) for size in range(1, n // 2 + 1))


def loop_phrase(text: str) -> str | None:
    """``text`` up to the end of its first pass where it is one phrase over and over, the last
    pass cut anywhere (a decode stopped inside a loop); None where it is not.

    Words compare case and punctuation aside: a loop often starts "Active mode partie" and goes
    on " active mode partie".
    """
    spans = list(re.finditer(r"\S+", text))
    keys = [re.sub(r"\W", "", m.group().casefold()) for m in spans]
    n = len(keys)
    for size in range(1, n // 2 + 1):
        passes = all(keys[i] == keys[i - size] for i in range(size, n - 1))
        if passes and keys[n - 1 - size].startswith(keys[n - 1]):
            return text[: spans[size - 1].end()]
    return None


def tokens(transcript: Transcript) -> int:
    return sum(len(s.tokens) for s in transcript.segments)


def used_up(transcript: Transcript, allowance: int | None) -> bool:
    """Whether a decode ran to its token allowance: stopped there, inside a loop."""
    return allowance is not None and tokens(transcript) >= allowance - 2


def past(transcript: Transcript, allowance: int | None) -> bool:
    """Whether a decode holds more tokens than the audio could carry (twice the fastest speech)."""
    return allowance is not None and tokens(transcript) > allowance


def token_allowance(samples: int) -> int | None:
    """The tokens a sized window may decode from ``samples`` of audio (None: Whisper's own bound)."""
    bound = _TOKENS_BASE + math.ceil(_TOKENS_PER_SECOND * samples / 16_000)
    return bound if bound < _WHISPER_MAX_TOKENS else None


def max_new_tokens(allowance: int | None, options: TranscribeOptions) -> int | None:
    """faster-whisper's ``max_new_tokens`` that lets the decoder produce ``allowance`` tokens.

    CTranslate2 decodes at most half of the length it is given, as openai-whisper's sample_len is
    half of the 448 positions, and faster-whisper gives it the prompt's length plus this value:
    the prompt here is the start sequence (3 tokens, a 4th without timestamps).
    """
    if allowance is None:
        return None
    return 2 * allowance - (4 if options.one_segment else 3)
