"""FastAPI dependencies: what a route needs, taken from the app that serves it."""

from typing import Annotated

from fastapi import Depends, Request

from .concurrency import Slots
from .service import TranscriptionService
from .settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> TranscriptionService:
    return request.app.state.service


def get_slots(request: Request) -> Slots:
    return request.app.state.slots


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[TranscriptionService, Depends(get_service)]
SlotsDep = Annotated[Slots, Depends(get_slots)]
