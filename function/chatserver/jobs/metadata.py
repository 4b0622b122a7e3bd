"""A job's options as the upload's S3 object metadata (``x-amz-meta-*``).

POST /jobs writes them into the presigned POST, whose policy pins each one; ``aws s3 cp
--metadata task=translate,...`` sets them by hand; the runner reads them from the object (the
only thing it sees). Names: ``language``, ``task``, ``prompt``, ``word-timestamps``,
``callback-url``, and ``status-url`` (written by POST /jobs for the callback's body only).

Metadata values are HTTP header values: ASCII only. A prompt that is not plain printable ASCII
travels as RFC 2047 encoded-words, ``=?UTF-8?B?<base64 of its UTF-8>?=``: POST /jobs encodes it
for its client, a client of ``aws s3 cp`` encodes it itself, and it is also the form in which S3
hands back a non-ASCII value that a browser POSTed.
"""

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from pydantic import TypeAdapter, ValidationError

from ..core.errors import ChatServerError, InvalidOption, quote_value
from ..core.settings import Settings
from ..speech.engines import Task
from ..speech.options import MAX_PROMPT_CHARS
from .callback_url import check_url
from .documents import JobOptions

PREFIX = "x-amz-meta-"
LANGUAGE = "language"
TASK = "task"
PROMPT = "prompt"
WORD_TIMESTAMPS = "word-timestamps"
CALLBACK_URL = "callback-url"
STATUS_URL = "status-url"
# S3's limit on one object's user-defined metadata: keys and values, in UTF-8 bytes.
MAX_METADATA_BYTES = 2048

_ENCODED_WORDS = re.compile(r"(=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=\s*)+")
_BOOL = TypeAdapter(bool)  # what a form field accepts: true/false, 1/0, yes/no, on/off


def header(name: str) -> str:
    return f"{PREFIX}{name}"


def encode_text(value: str) -> str:
    """``value`` as a metadata value: as it is when it is plain printable ASCII, else RFC 2047."""
    plain = value.isascii() and value.isprintable() and value == value.strip() and "=?" not in value
    if plain:
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode()).decode()}?="


def decode_text(value: str) -> str:
    """A metadata value as text: RFC 2047 encoded-words decoded, anything else taken as it is."""
    if not _ENCODED_WORDS.fullmatch(value):
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid RFC 2047 ({exc})") from None


def metadata_fields(options: JobOptions, status_url: str | None) -> dict[str, str]:
    """The ``x-amz-meta-*`` fields of an upload with these options; defaults are left out."""
    fields: dict[str, str] = {}
    if options.language:
        fields[header(LANGUAGE)] = options.language
    if options.task is not Task.transcribe:
        fields[header(TASK)] = options.task.value
    if options.prompt:
        fields[header(PROMPT)] = encode_text(options.prompt)
    if options.word_timestamps:
        fields[header(WORD_TIMESTAMPS)] = "true"
    if options.callback_url:
        fields[header(CALLBACK_URL)] = options.callback_url
        if status_url:
            fields[header(STATUS_URL)] = status_url
    size = sum(len(k.encode()) + len(v.encode()) for k, v in fields.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidOption(
            f"The options take {size} bytes of S3 object metadata, over S3's {MAX_METADATA_BYTES} byte "
            "limit: shorten the prompt (Whisper keeps only its last 224 tokens) or the callback_url."
        )
    return fields


@dataclass(frozen=True)
class UploadOptions:
    """What an upload's metadata asks for. ``refused`` names every value that could not be read
    (that value is left at its default in ``options``): the job then ends ``failed``."""

    options: JobOptions
    refused: str | None
    status_url: str | None


def read_metadata(metadata: Mapping[str, str], settings: Settings) -> UploadOptions:
    """The options of an upload from its metadata (boto3's ``Metadata``: names without the prefix)."""
    refused: list[str] = []
    fields: dict[str, object] = {}

    def raw(name: str) -> str | None:
        value = metadata.get(name, "").strip()
        return value or None

    fields["language"] = raw(LANGUAGE)  # checked with the engine's languages by the runner
    if (task := raw(TASK)) is not None:
        try:
            fields["task"] = Task(task.lower())
        except ValueError:
            refused.append(f"{header(TASK)} is {quote_value(task)}; accepted: transcribe or translate")
    if (words := raw(WORD_TIMESTAMPS)) is not None:
        try:
            fields["word_timestamps"] = _BOOL.validate_python(words)
        except ValidationError:
            refused.append(f"{header(WORD_TIMESTAMPS)} is {quote_value(words)}; accepted: true or false")
    if (prompt := raw(PROMPT)) is not None:
        try:
            text = decode_text(prompt)
        except ValueError as exc:
            refused.append(
                f"{header(PROMPT)} is {exc}; accepted: printable ASCII, or non-ASCII text as "
                "=?UTF-8?B?<base64 of its UTF-8>?="
            )
        else:
            if len(text) > MAX_PROMPT_CHARS:
                too_long = f"is {len(text)} characters; accepted: up to {MAX_PROMPT_CHARS}"
                refused.append(f"{header(PROMPT)} {too_long}")
            else:
                fields["prompt"] = text or None
    if (callback := raw(CALLBACK_URL)) is not None:
        # Kept even when refused: it is part of the upload's version, and never called unchecked.
        fields["callback_url"] = callback
        try:
            if settings.callback_secret is None:
                raise InvalidOption(
                    f"{header(CALLBACK_URL)} needs a signing secret on the server "
                    "(CHATSERVER_CALLBACK_SECRET), and none is configured"
                )
            check_url(callback, allow_private=settings.callback_allow_private, field=header(CALLBACK_URL))
        except ChatServerError as exc:
            refused.append(exc.message.rstrip("."))
    options = JobOptions.model_validate(fields)
    return UploadOptions(options, "; ".join(refused) + "." if refused else None, raw(STATUS_URL))
