"""GET /health: answers while transcriptions run (they run in worker threads)."""

from fastapi import APIRouter
from pydantic import BaseModel

from ..dependencies import ServiceDep, SlotsDep
from ..openapi import COMMON_ERRORS, error_responses

router = APIRouter()


class Health(BaseModel):
    status: str
    ready: bool
    engine: str
    model: str
    slots: int
    admitted: int


@router.get("/health", responses=error_responses(*COMMON_ERRORS))
async def health(service: ServiceDep, slots: SlotsDep) -> Health:
    return Health(
        status="ok",
        ready=True,
        engine=service.engine.name,
        model=service.engine.model,
        slots=slots.capacity,
        admitted=slots.admitted,
    )
