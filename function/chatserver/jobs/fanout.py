"""Fan-out of long S3 uploads: the work layout, the plan, the chunk messages, and the split.

An upload longer than ``fanout_min_seconds`` is decoded once by the job runner, cut at silences
into chunks of at most ``chunk_seconds`` (chunks.py), and every chunk is written as FLAC under

    <work_prefix><job_id>/<etag>.<language or auto>[.<options>]/
        chunks/NNNN.flac    plan.json    parts/NNNN.json

then one message per chunk goes to the chunk queue, whose event source mapping invokes this same
function (chunk_worker.py transcribes a chunk, writes its part, and the last one merges). The
version segment (ETag, requested language, and a digest of the other options when any is set)
keeps a replaced upload's chunks apart from the new upload's. Every message carries the job's
options: each chunk is transcribed with the task and word timestamps asked for, and the prompt
conditions chunk 1 only, as it conditions only the first window of one pass. Nothing is ever
written under the upload or the result prefix from here.
"""

import hashlib
import json
import logging
import time
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from ..core.settings import Settings
from ..speech.audio import SAMPLE_RATE, ffmpeg_executable, temporary_audio_path, write_flac
from ..speech.service import TranscriptionService
from .chunks import Cut, cut_at_silences, frame_power_db
from .documents import JobOptions, Source
from .s3 import S3Client, SQSClient, make_sqs_client

logger = logging.getLogger(__name__)

CHUNK_MESSAGE_KIND = "chatserver.chunk"
_SQS_BATCH = 10  # SendMessageBatch's limit


class PlannedChunk(BaseModel):
    index: int
    start: float = Field(description="Seconds from the start of the recording.")
    end: float
    key: str = Field(description="The chunk's FLAC under the work prefix.")


class ChunkPlan(BaseModel):
    job_id: str
    source: Source
    options: JobOptions
    language: str = Field(description="Every chunk is transcribed in this language: given or detected once.")
    duration: float
    chunks: list[PlannedChunk]


class ChunkMessage(BaseModel):
    """One SQS message of the chunk queue: everything a worker needs without reading the plan."""

    kind: Literal["chatserver.chunk"] = CHUNK_MESSAGE_KIND
    bucket: str
    key: str = Field(description="The upload's key: only ever read (head) to see it is still current.")
    source: Source
    options: JobOptions
    language: str
    created_at: datetime
    started_at: datetime
    status_url: str | None = Field(default=None, description="For the callback's body (record.py).")
    work: str = Field(description="The version's work prefix, ending in '/'.")
    index: int
    start: float
    end: float
    count: int = Field(description="Chunks in the plan.")
    duration: float = Field(description="Seconds of the whole recording.")

    @property
    def chunk_key(self) -> str:
        return chunk_key(self.work, self.index)

    @property
    def part_key(self) -> str:
        return part_key(self.work, self.index)

    @property
    def span(self) -> str:
        return f"chunk {self.index + 1}/{self.count} ({_clock(self.start)}-{_clock(self.end)})"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def work_prefix(settings: Settings, job_id: str, etag: str, options: JobOptions) -> str:
    version = f"{etag}.{options.language or 'auto'}"
    others = options.model_dump(exclude={"language"}, exclude_defaults=True)
    if others:
        # The same bytes with other options (metadata replaced in place keeps the ETag) are
        # another version: its chunks must not mix with this one's.
        version += "." + hashlib.sha256(json.dumps(others, sort_keys=True).encode()).hexdigest()[:16]
    return f"{settings.work_prefix}{job_id}/{version}/"


def chunk_key(work: str, index: int) -> str:
    return f"{work}chunks/{index:04d}.flac"


def part_key(work: str, index: int) -> str:
    return f"{work}parts/{index:04d}.json"


def plan_key(work: str) -> str:
    return f"{work}plan.json"


def parse_chunk_message(body: Any) -> ChunkMessage | None:
    """The chunk message in an SQS body; None for anything else (S3 notifications among them)."""
    try:
        value = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("kind") != CHUNK_MESSAGE_KIND:
        return None
    try:
        return ChunkMessage.model_validate(value)
    except ValidationError as exc:
        # Ours but unreadable (a newer schema, or edited by hand): retrying cannot help.
        logger.error("ignoring a malformed chunk message: %s", exc)
        return None


def delete_work(s3: S3Client, settings: Settings, bucket: str, work: str) -> int:
    """Delete every object under one version's work prefix; never anything outside the work prefix."""
    if not work.startswith(settings.work_prefix) or not work.endswith("/"):
        raise ValueError(f"{work!r} is not a work prefix under {settings.work_prefix!r}")
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=work):
        objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            deleted += len(objects)
    return deleted


class FanOut:
    """The runner's side: decide, cut, write the chunks and the plan, send the messages."""

    def __init__(self, settings: Settings, s3: S3Client, service: TranscriptionService) -> None:
        if not settings.chunk_queue_url:
            raise ValueError("FanOut needs settings.chunk_queue_url")
        self.settings = settings
        self.s3 = s3
        self.service = service
        self.queue_url = settings.chunk_queue_url
        self._sqs: SQSClient | None = None
        self._ffmpeg = ffmpeg_executable(settings.ffmpeg_path)

    @property
    def sqs(self) -> SQSClient:
        if self._sqs is None:
            self._sqs = make_sqs_client(self.settings)
        return self._sqs

    def wanted(self, samples: np.ndarray) -> bool:
        return samples.size / SAMPLE_RATE > self.settings.fanout_min_seconds

    def language(self, samples: np.ndarray, requested: str | None) -> str:
        # Once for the whole recording, where a single pass detects it: a chunk that starts with
        # music or another speaker's aside would otherwise pick its own language.
        return requested or self.service.detect_language(samples)[0].code

    def cut(self, samples: np.ndarray) -> list[Cut]:
        return cut_at_silences(samples, self.settings.chunk_seconds, self.settings.chunk_search_seconds)

    def write_chunks(
        self, bucket: str, work: str, samples: np.ndarray, cuts: list[Cut]
    ) -> list[PlannedChunk]:
        planned: list[PlannedChunk] = []
        with temporary_audio_path(self.settings.tmp_dir) as path:
            flac = path.with_suffix(".flac")
            for index, cut in enumerate(cuts):
                size = write_flac(
                    samples[cut.start : cut.end],
                    flac,
                    ffmpeg=self._ffmpeg,
                    timeout_s=self.settings.ffmpeg_timeout_s,
                )
                key = chunk_key(work, index)
                with flac.open("rb") as body:
                    self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="audio/flac")
                logger.info(
                    "chunk %d: %.1f-%.1f s, %d bytes, cut at %.1f dB, s3://%s/%s",
                    index,
                    cut.start_s,
                    cut.end_s,
                    size,
                    cut.level_db,
                    bucket,
                    key,
                )
                planned.append(PlannedChunk(index=index, start=cut.start_s, end=cut.end_s, key=key))
        return planned

    def write_plan(self, bucket: str, work: str, plan: ChunkPlan) -> None:
        self.s3.put_object(
            Bucket=bucket,
            Key=plan_key(work),
            Body=plan.model_dump_json().encode(),
            ContentType="application/json",
        )

    def send(self, messages: list[ChunkMessage]) -> None:
        for first in range(0, len(messages), _SQS_BATCH):
            batch = messages[first : first + _SQS_BATCH]
            entries = [{"Id": str(m.index), "MessageBody": m.model_dump_json()} for m in batch]
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if failed := response.get("Failed"):
                # Raising retries the whole split; chunks already transcribed are not redone.
                raise RuntimeError(f"SQS refused {len(failed)} chunk messages: {failed[:3]}")

    def plan(
        self,
        bucket: str,
        job_id: str,
        source: Source,
        options: JobOptions,
        language: str | None,
        samples: np.ndarray,
    ) -> tuple[ChunkPlan, str, float]:
        """Cut and store one upload (``language``: the checked code of the requested one);
        returns the plan, its work prefix and the split's seconds."""
        started = time.perf_counter()
        language = self.language(samples, language)
        work = work_prefix(self.settings, job_id, source.etag, options)
        cuts = self.cut(samples)
        self._log_cuts(job_id, samples, cuts)
        planned = self.write_chunks(bucket, work, samples, cuts)
        plan = ChunkPlan(
            job_id=job_id,
            source=source,
            options=options,
            language=language,
            duration=round(samples.size / SAMPLE_RATE, 3),
            chunks=planned,
        )
        self.write_plan(bucket, work, plan)
        return plan, work, time.perf_counter() - started

    def messages(
        self,
        bucket: str,
        key: str,
        plan: ChunkPlan,
        work: str,
        created_at: datetime,
        started_at: datetime,
        status_url: str | None = None,
    ) -> list[ChunkMessage]:
        return [
            ChunkMessage(
                bucket=bucket,
                key=key,
                source=plan.source,
                options=plan.options,
                language=plan.language,
                created_at=created_at,
                started_at=started_at,
                status_url=status_url,
                work=work,
                index=chunk.index,
                start=chunk.start,
                end=chunk.end,
                count=len(plan.chunks),
                duration=plan.duration,
            )
            for chunk in plan.chunks
        ]

    def _log_cuts(self, job_id: str, samples: np.ndarray, cuts: list[Cut]) -> None:
        # A cut as loud as the speech means the search window held no pause: say so.
        speech_db = float(np.percentile(frame_power_db(samples), 90))
        loud = [c for c in cuts[:-1] if c.level_db > speech_db - 20]
        logger.info(
            "job %r: %d chunks, cuts at %s dB (speech at %.1f dB)%s",
            job_id,
            len(cuts),
            ", ".join(f"{c.level_db:.0f}" for c in cuts[:-1]) or "-",
            speech_db,
            f"; {len(loud)} cut(s) within 20 dB of the speech" if loud else "",
        )
