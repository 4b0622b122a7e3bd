"""Short load test against a real uvicorn server: every request is answered, nothing is left behind.

The full version (16 clients for 60 s, and throughput at 1 vs 4 clients) is in the benchmark:
``python -m bench`` (bench/load.py). This one runs in the suite in about 25 s.
"""

import time
from pathlib import Path

import httpx
import psutil

from tests.support.corpus import clip, wer
from tests.support.loadgen import closed_loop
from tests.support.servers import uvicorn_server

CLIENTS = 6
SECONDS = 12
# Short real clips in three containers: WAV, FLAC, Ogg/Opus.
CLIPS = [clip("sr_english.wav"), clip("jfk.flac"), clip("fleurs-en-004.ogg")]
# RSS after the load may exceed the warmed-up baseline by this much: allocator arenas
# that the threads grew stay mapped, a leak of every request's audio would not fit.
RSS_GROWTH_LIMIT = 1.25


def test_closed_loop_clients_are_all_answered_and_nothing_is_left(tmp_path: Path, record_property) -> None:
    audio_tmp = tmp_path / "audio-tmp"
    spool_tmp = tmp_path / "spool-tmp"
    audio_tmp.mkdir()
    spool_tmp.mkdir()
    env = {
        "CHATSERVER_TMP_DIR": str(audio_tmp),
        # Starlette spools uploads over 1 MB (jfk.flac) to the system temp dir: watch it too.
        "TMPDIR": str(spool_tmp),
        "CHATSERVER_MAX_CONCURRENT_JOBS": "1",
        "CHATSERVER_MAX_QUEUED_JOBS": "2",
        "CHATSERVER_RETRY_AFTER_S": "1",
        # Greedy decoding: more requests in the window; this test is about answers, not accuracy.
        "CHATSERVER_BEAM_SIZE": "1",
    }
    with uvicorn_server(env, tmp_path / "uvicorn.log") as server:
        process = psutil.Process(server.process.pid)
        # Warm up with one request per clip: the baseline RSS and the texts to expect under load.
        expected = {}
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for c in CLIPS:
                response = http.post("/transcribe", files={"file": (c.path.name, c.path.read_bytes())})
                assert response.status_code == 200, response.text
                expected[c.path.name] = response.json()["transcript"]
        assert wer(clip("jfk.flac").reference, expected["jfk.flac"]) < 0.1
        baseline_rss = process.memory_info().rss

        result = closed_loop(server.url, CLIPS, clients=CLIENTS, duration_s=SECONDS, timeout_s=120)

        assert result.lost == [], result.summary()
        assert len(result.ok) >= 3, result.summary()
        # 6 clients against 1 slot + 2 waiting must overflow, so the 503 path was exercised.
        assert len(result.busy) >= 1, result.summary()
        # Under load every answer is the same text as the unloaded one: no crossed requests.
        for outcome in result.ok:
            assert outcome.text == expected[outcome.clip], outcome
        assert result.health_failures == [], result.summary()
        # /health is served by the event loop while transcriptions run in worker threads.
        assert max(result.health_latencies_s) < 2.0, result.summary()

        health = httpx.get(f"{server.url}/health", timeout=5).json()
        assert health["admitted"] == 0, health
        time.sleep(1)
        after_rss = process.memory_info().rss
        assert after_rss <= baseline_rss * RSS_GROWTH_LIMIT, (baseline_rss, after_rss, result.summary())
        record_property("load", result.summary())
        record_property("rss_mib", f"{baseline_rss / 2**20:.0f} -> {after_rss / 2**20:.0f}")
    assert list(audio_tmp.iterdir()) == []
    assert list(spool_tmp.iterdir()) == []
    log = (tmp_path / "uvicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]
