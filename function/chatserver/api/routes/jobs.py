"""HTTP routes for S3 jobs: create one with a presigned upload, then poll its result document."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ...core.errors import ACCEPTED_FORMATS, JobNotFound
from ...jobs.documents import JobResult
from ...jobs.store import PresignedPost, is_job_id
from ..dependencies import JobStoreDep, ServiceDep, SettingsDep
from ..openapi import BODY_ERRORS, COMMON_ERRORS, error_responses

router = APIRouter(tags=["jobs"])


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


_JOB_DESCRIPTIONS = {
    400: "Unknown language.",
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
) -> JobCreated:
    """Create an S3 transcription job for recordings too large or too long for POST /transcribe."""
    code = service.options(language).language  # refuse a bad language now, not after the upload
    job_id, pending, upload = await run_in_threadpool(store.create, code)
    return JobCreated(
        job_id=job_id,
        status_url=str(request.url_for("get_job", job_id=job_id)),
        upload=upload,
        upload_key=upload.fields["key"],
        max_bytes=settings.max_job_upload_bytes,
        expires_at=pending.upload_expires_at,
        language=code,
    )


# ":path" lets ids with slashes reach the check below and get its clear 404, not a bare "Not Found".
@router.get(
    "/jobs/{job_id:path}",
    name="get_job",
    response_model=JobResult,
    # 422 too: FastAPI would otherwise declare its own HTTPValidationError body for it.
    responses=error_responses(*COMMON_ERRORS, 401, 404, 422, 501, 503, descriptions=_JOB_DESCRIPTIONS),
)
async def get_job(
    job_id: Annotated[str, Path(description="The job_id that POST /jobs returned.")],
    store: JobStoreDep,
) -> JobResult:
    """The job's result document: pending, processing (with progress), completed or failed."""
    if not is_job_id(job_id):
        raise JobNotFound(job_id, malformed=True)
    stored = await run_in_threadpool(store.get, job_id)
    if stored.doc is None:
        if stored.etag is not None:
            raise RuntimeError(f"the result document of job {job_id} is not a schema 1 result")
        raise JobNotFound(job_id, malformed=False)
    return stored.doc
