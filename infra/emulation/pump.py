"""The chunk queue's event source mapping: SQS messages handed to emulators, one at a time each."""

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .emulator import Emulator
from .events import sqs_record


def _succeeded(answer: Any, message_id: str) -> bool:
    # ReportBatchItemFailures: a message listed in batchItemFailures failed; an error answer
    # (the handler raised, or the runtime died) fails the whole batch.
    if not isinstance(answer, dict) or "errorType" in answer:
        return False
    failures = answer.get("batchItemFailures") or []
    return all(failure.get("itemIdentifier") != message_id for failure in failures)


@dataclass(frozen=True)
class Delivery:
    worker: int
    message_id: str
    receive_count: int
    succeeded: bool
    seconds: float


class Pump:
    """What Lambda's SQS event source mapping does, for K local workers: batch size 1.

    One thread per worker receives a message, invokes its worker with it, deletes it when the
    handler succeeded, and otherwise leaves it to come back when its visibility timeout ends.
    While the invocation runs, the visibility is extended every ``visibility_s / 2``: that
    stands for a queue timeout longer than the function timeout (as template.yaml sets it),
    while a worker that is killed lets its message come back within ``visibility_s``. A dead
    worker is not replaced; its thread ends.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        workers: Sequence[Emulator],
        *,
        visibility_s: int = 10,
        wait_s: int = 1,
        region: str = "us-east-1",
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.workers = list(workers)
        self.visibility_s = visibility_s
        self.wait_s = wait_s
        self.region = region
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        self.queue_arn = attributes["Attributes"]["QueueArn"]
        self.deliveries: list[Delivery] = []
        self.on_delivery: Callable[[int, dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Pump":
        for index in range(len(self.workers)):
            thread = threading.Thread(target=self._serve, args=(index,), name=f"pump-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 30) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def __enter__(self) -> "Pump":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, index: int) -> None:
        worker = self.workers[index]
        while not self._stopping.is_set() and worker.alive():
            try:
                received = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=self.wait_s,
                    VisibilityTimeout=self.visibility_s,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:  # the queue's server went away: the pump is being torn down
                if not self._stopping.is_set():
                    sys.stderr.write(f"pump-{index}: receive failed: {exc}\n")
                    time.sleep(1)
                continue
            for message in received.get("Messages", []):
                self._deliver(index, worker, message)

    def _deliver(self, index: int, worker: Emulator, message: dict[str, Any]) -> None:
        if self.on_delivery is not None:
            self.on_delivery(index, message)
        done = threading.Event()
        keeper = threading.Thread(target=self._keep_invisible, args=(worker, message, done), daemon=True)
        keeper.start()
        started = time.monotonic()
        try:
            answer = worker.invoke({"Records": [sqs_record(message, self.queue_arn, self.region)]})
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            answer = None  # the worker died mid-invocation
            # A killed emulator drops its connections before it is reaped: wait for that, so
            # that this thread sees it dead and never takes another message for it.
            if worker.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=10)
        finally:
            done.set()
            keeper.join()
        succeeded = _succeeded(answer, message["MessageId"])
        if succeeded:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        with self._lock:
            self.deliveries.append(
                Delivery(index, message["MessageId"], count, succeeded, time.monotonic() - started)
            )

    def _keep_invisible(self, worker: Emulator, message: dict[str, Any], done: threading.Event) -> None:
        while not done.wait(self.visibility_s / 2):
            if not worker.alive():
                return
            with contextlib.suppress(Exception):
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self.visibility_s,
                )

    def idle(self) -> bool:
        """No message visible or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"])
            + int(attributes["ApproximateNumberOfMessagesNotVisible"])
            == 0
        )
