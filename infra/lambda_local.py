#!/usr/bin/env python3
"""Run the Lambda handler locally under the real Runtime Interface Emulator, without Docker.

    .venv/bin/python infra/lambda_local.py                    # serve on 127.0.0.1:9000 until Ctrl-C
    curl -s http://127.0.0.1:9000/2015-03-31/functions/function/invocations -d @infra/events/api-v1.json

    # one event, then stop; --audio swaps in another recording as the multipart body
    .venv/bin/python infra/lambda_local.py --invoke infra/events/api-v2.json --audio note.webm

    # K workers fed from an SQS queue, as the chunk queue's event source mapping feeds Lambda
    .venv/bin/python infra/lambda_local.py --workers 2 --queue-url URL --sqs-endpoint http://127.0.0.1:5000

The emulator (aws-lambda-rie) is the binary that ships inside the aws-sam-cli wheel; the
runtime interface client is awslambdaric, as in the Lambda base image, so the handler runs
exactly as in the image: imported once at init, then called once per event. Both bind
127.0.0.1 only. The CHATSERVER_* and AWS_* variables of this shell reach the handler.

The pieces are in infra/emulation/, which the tests import too, so the script and the suite
drive the emulator the same way.
"""

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from emulation.emulator import Emulator
from emulation.events import http_response_body, with_audio
from emulation.gateway import serve
from emulation.pump import Pump
from emulation.runtimes import die_with_parent


# --- command line -----------------------------------------------------------------------------
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000, help="127.0.0.1 port to POST events to (9000)")
    parser.add_argument("--timeout", type=int, default=300, help="function timeout in seconds (300)")
    parser.add_argument(
        "--invoke", type=Path, metavar="EVENT.json", help="send this event, print the answer, stop"
    )
    parser.add_argument("--audio", type=Path, help="with --invoke: this recording as the multipart body")
    parser.add_argument("--language", help="with --audio: the language form field")
    # The HTTP mode lives in lambda_http.py (API Gateway REST events from HTTP requests).
    parser.add_argument(
        "--http", type=int, metavar="PORT", help="serve HTTP on 127.0.0.1:PORT as API Gateway would"
    )
    parser.add_argument("--stage", default="Prod", help="with --http: the stage path segment; '' for none")
    # The chunk queue's event source mapping (fan-out of long S3 uploads).
    parser.add_argument("--workers", type=int, metavar="K", help="K emulators on --port, --port + 1, ...")
    parser.add_argument("--queue-url", help="with --workers: the SQS queue to feed them from")
    parser.add_argument("--sqs-endpoint", help="with --workers: the SQS endpoint (a moto server's URL)")
    parser.add_argument("--region", default="us-east-1", help="with --workers: the queue's region")
    return parser.parse_args(argv)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # SIGTERM (a service manager, `kill`, a test's terminate()) and the exit of whoever started
    # this script end it as Ctrl-C does: every emulator's context exits and stops its process
    # group, so no emulator or runtime is left holding a port.
    signal.signal(signal.SIGTERM, _interrupt)
    die_with_parent(signal.SIGTERM)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _run_workers(args: argparse.Namespace) -> int:
    import boto3

    if not args.queue_url:
        raise SystemExit("--workers needs --queue-url")
    sqs = boto3.client("sqs", endpoint_url=args.sqs_endpoint, region_name=args.region)
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(Emulator(port=args.port + k, timeout_s=args.timeout))
            for k in range(args.workers)
        ]
        pump = stack.enter_context(Pump(sqs, args.queue_url, workers, region=args.region))
        _out(
            f"{len(workers)} workers on 127.0.0.1:{args.port}-{args.port + len(workers) - 1}, "
            f"fed from {args.queue_url}"
        )
        while any(worker.alive() for worker in workers):
            time.sleep(1)
        _out(f"every worker exited; {len(pump.deliveries)} messages delivered")
    return 1


def _run(args: argparse.Namespace) -> int:
    if args.workers:
        return _run_workers(args)
    if args.http is not None:
        return serve(args.http, args.stage, args.timeout)
    emulator = Emulator(port=args.port, timeout_s=args.timeout)
    if args.invoke is None:
        _out(f"aws-lambda-rie: POST events to {emulator.url} (Ctrl-C stops it), e.g.")
        _out(f"  curl -s {emulator.url} -d @infra/events/api-v1.json")
        with emulator, contextlib.suppress(KeyboardInterrupt):
            if emulator.process is not None:
                emulator.process.wait()
        return 0
    event = json.loads(args.invoke.read_text(encoding="utf-8"))
    if args.audio is not None:
        event = with_audio(event, args.audio, {"language": args.language} if args.language else None)
    with emulator:
        result = emulator.invoke(event)
    if isinstance(result, dict) and "statusCode" in result:
        _out(f"HTTP {result['statusCode']}")
        _out(http_response_body(result))
    else:
        _out(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
