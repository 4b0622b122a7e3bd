"""HTTP routes for S3 jobs: create one with a presigned upload, then poll its result document."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ...core.errors import ACCEPTED_FORMATS, InvalidOption, quote_value
from ...jobs.callback_url import check_callback
from ...jobs.documents import CompletedJob, JobOptions, JobResult
from ...jobs.errors import JobNotFound
from ...jobs.store import PresignedPost, is_job_id, new_job_id
from ...speech.engines import Task
from ...speech.options import MAX_PROMPT_CHARS, request_options
from ...speech.transcript import (
    ResponseFormat,
    VerboseTranscriptionResponse,
    VerboseTranscriptionWithWords,
    render_text,
    to_response,
)
from ..dependencies import JobStoreDep, ServiceDep, SettingsDep
from ..openapi import BODY_ERRORS, COMMON_ERRORS, error_responses, transcription_responses

router = APIRouter(tags=["jobs"])

_FORMATS = [f.value for f in ResponseFormat]


class JobCreated(BaseModel):
    job_id: str = Field(description="Random and unguessable: whoever has it can read the transcript.")
    status_url: str = Field(description="GET it for the job's result document.")
    upload: PresignedPost = Field(
        description=f"POST the recording ({ACCEPTED_FORMATS}) as multipart/form-data: every field "
        "as given, then the file as the last field, named 'file'."
    )
    upload_key: str
    max_bytes: int = Field(description="S3 refuses larger uploads (the policy's content-length-range).")
    expires_at: datetime = Field(description="S3 refuses uploads that start after this time.")
    language: str | None = Field(description="ISO 639-1 code stored with the upload; null: detected.")
    task: Task = Task.transcribe
    prompt: str | None = None
    word_timestamps: bool = False
    callback_url: str | None = Field(default=None, description="POSTed to, signed, when the result is ready.")


_JOB_DESCRIPTIONS = {
    400: "Unknown language, options that do not go together, a callback_url that is refused or "
    "that this server cannot sign, or an unknown format.",
    404: "No job has this id.",
    501: "This server has no bucket configured for the S3 path.",
    503: "S3 did not answer, or too many uploads are being received; see Retry-After.",
}


@router.post(
    "/jobs",
    status_code=201,
    responses=error_responses(*COMMON_ERRORS, *BODY_ERRORS, 401, 501, descriptions=_JOB_DESCRIPTIONS),
)
async def create_job(
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    store: JobStoreDep,
    language: Annotated[
        str | None,
        Form(description="Whisper language name or ISO code ('french', 'fr'); omit to detect."),
    ] = None,
    task: Annotated[
        Task, Form(description="transcribe, or translate into English (language: the spoken one).")
    ] = Task.transcribe,
    prompt: Annotated[
        str | None,
        Form(
            max_length=MAX_PROMPT_CHARS,
            description="Text in the audio's style, or words it contains; conditions the first "
            "window of the recording. Any Unicode: stored RFC 2047-encoded in the upload's metadata.",
        ),
    ] = None,
    word_timestamps: Annotated[
        bool, Form(description="Each segment of the result carries its words, with start and end.")
    ] = False,
    callback_url: Annotated[
        str | None,
        Form(
            description="An https URL on a public host, POSTed to (signed with X-ChatServer-Signature) "
            "when the result is written; needs CHATSERVER_CALLBACK_SECRET on the server."
        ),
    ] = None,
) -> JobCreated:
    """Create an S3 transcription job for recordings too large or too long for POST /transcribe."""
    # Everything is refused now, not after the upload: the options as /transcribe checks them...
    checked = request_options(service, language, task=task, prompt=prompt, word_timestamps=word_timestamps)
    if callback_url:
        # ...and the callback (its host resolved: a blocking call, so in a thread).
        await run_in_threadpool(check_callback, callback_url, settings)
    options = JobOptions(
        language=checked.language,
        task=task,
        prompt=checked.prompt,
        word_timestamps=word_timestamps,
        callback_url=callback_url or None,
    )
    job_id = new_job_id()
    status_url = str(request.url_for("get_job", job_id=job_id))
    pending, upload = await run_in_threadpool(store.create, job_id, options, status_url)
    return JobCreated(
        job_id=job_id,
        status_url=status_url,
        upload=upload,
        upload_key=upload.fields["key"],
        max_bytes=settings.max_job_upload_bytes,
        expires_at=pending.upload_expires_at,
        language=options.language,
        task=options.task,
        prompt=options.prompt,
        word_timestamps=options.word_timestamps,
        callback_url=options.callback_url,
    )


# ":path" lets ids with slashes reach the check below and get its clear 404, not a bare "Not Found".
@router.get(
    "/jobs/{job_id:path}",
    name="get_job",
    response_model=JobResult | VerboseTranscriptionResponse | VerboseTranscriptionWithWords,
    responses={
        **transcription_responses(
            "The job's result document (format json, and any format until the job is completed), "
            "or the completed transcript in the format asked for."
        ),
        # 422 too: FastAPI would otherwise declare its own HTTPValidationError body for it.
        **error_responses(*COMMON_ERRORS, 400, 401, 404, 422, 501, 503, descriptions=_JOB_DESCRIPTIONS),
    },
)
async def get_job(
    job_id: Annotated[str, Path(description="The job_id that POST /jobs returned.")],
    store: JobStoreDep,
    format: Annotated[
        str,
        Query(
            description="How a completed result is rendered: json (the result document), "
            "verbose_json, text, srt or vtt, as /transcribe renders them. A job not completed "
            "answers its document whatever the format.",
            json_schema_extra={"enum": _FORMATS},
        ),
    ] = ResponseFormat.json.value,
) -> JobResult | Response:
    """The job's result document: pending, processing (with progress), completed or failed."""
    try:
        wanted = ResponseFormat(format)
    except ValueError:
        accepted = ", ".join(_FORMATS)
        raise InvalidOption(f"Unknown format {quote_value(format)}; accepted: {accepted}.") from None
    if not is_job_id(job_id):
        raise JobNotFound(job_id, malformed=True)
    stored = await run_in_threadpool(store.get, job_id)
    doc = stored.doc
    if doc is None:
        if stored.etag is not None:
            raise RuntimeError(f"the result document of job {job_id} is not a schema 1 result")
        raise JobNotFound(job_id, malformed=False)
    if not isinstance(doc, CompletedJob) or wanted is ResponseFormat.json:
        return doc
    transcript = doc.transcript()
    if rendered := render_text(transcript, wanted):
        body, media_type = rendered
        return PlainTextResponse(body, media_type=media_type)
    return to_response(transcript, verbose=True, words=doc.options.word_timestamps)
