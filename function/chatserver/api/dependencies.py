"""FastAPI dependencies: what a route needs, taken from the app that serves it."""

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from ..core.errors import RepeatedField
from ..core.settings import Settings
from ..jobs.errors import S3NotConfigured
from ..jobs.s3 import make_s3_client
from ..jobs.store import JobStore
from ..speech.service import TranscriptionService
from .slots import Slots


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> TranscriptionService:
    return request.app.state.service


def get_slots(request: Request) -> Slots:
    return request.app.state.slots


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[TranscriptionService, Depends(get_service)]
SlotsDep = Annotated[Slots, Depends(get_slots)]


def get_job_store(request: Request) -> JobStore:
    settings: Settings = request.app.state.settings
    if not settings.bucket:
        raise S3NotConfigured()
    # Built on first use, not in create_app: a deployment without a bucket never makes an S3
    # client or looks for credentials.
    store = getattr(request.app.state, "job_store", None)
    if store is None:
        store = request.app.state.job_store = JobStore(make_s3_client(settings), settings)
    return store


JobStoreDep = Annotated[JobStore, Depends(get_job_store)]


async def one_file_part(connection: HTTPConnection) -> None:
    """Refuses a second ``file`` part instead of silently transcribing the last one."""
    if not isinstance(connection, Request):
        return  # a WebSocket (/v1/realtime): no form
    request = connection
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return  # the route reads no form: nothing was parsed, nothing to check
    # FastAPI has parsed the form for the route already: this is the cached FormData.
    form = await request.form()
    count = len(form.getlist("file"))
    if count > 1:
        raise RepeatedField("file", count)
