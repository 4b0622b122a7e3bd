"""The decoding options a request may set: speech/options.py, where the S3 jobs check theirs too."""

from ..speech.options import MAX_PROMPT_CHARS, request_options

__all__ = ["MAX_PROMPT_CHARS", "request_options"]
