"""The decoding options a caller may set, checked before any audio is read.

Every caller checks them here: the HTTP routes (api/), and the S3 jobs (jobs/), whose options
come from POST /jobs or from the upload's ``x-amz-meta-*`` metadata.
"""

from ..core.errors import InvalidOption
from .engines import Task, TranscribeOptions
from .segmentation import SpeechDetection
from .service import TranscriptionService

# Whisper conditions on at most 224 prompt tokens and keeps the last ones; a few thousand
# characters is far past that and still bounds what a form field can make us hold.
MAX_PROMPT_CHARS = 4000


def request_options(
    service: TranscriptionService,
    language: str | None,
    *,
    task: Task = Task.transcribe,
    prompt: str | None = None,
    temperature: float | None = None,
    word_timestamps: bool = False,
    vad_filter: bool | None = None,
    detection: SpeechDetection | None = None,
) -> TranscribeOptions:
    """The server's options with the request's on top; ``vad_filter=None`` keeps the setting,
    ``detection=None`` the service's cut at silences."""
    options = service.options(language)  # refuses an unknown or unsupported language
    if task is Task.translate and not service.engine.multilingual:
        raise InvalidOption(
            f"The model {service.engine.model!r} is English-only and cannot translate; "
            "use task=transcribe, or a multilingual model."
        )
    update: dict[str, object] = {
        "task": task,
        "prompt": prompt or None,
        "temperature": temperature,
        "word_timestamps": word_timestamps,
        "detection": detection,
    }
    if vad_filter is not None:
        update["vad_filter"] = vad_filter
    return options.model_copy(update=update)
