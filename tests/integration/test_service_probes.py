"""Health probes with real parts: Redis and the API (`heterolora serve`) without a worker.

- A burst of anonymous `GET /readyz` must not take the thread pool (or the broker's connection
  pool) with it: authenticated routes keep answering.
- /healthz turns red when the request thread pool is wedged.
- SIGTERM ends the API within its grace period even while a request is stuck in a thread.
- Without keys, the app refuses a reachable address whatever server runs it.
- Sending a job fails fast while Redis is away, and works again when it is back.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from devtools.stack import Api, RedisServer, Stack, env_for, free_port, start_stack, stop_stack, wait_until
from service.api.app import create_app
from service.api.probes import EXIT_AFTER_GRACE
from service.jobs.celery_queue import BROKER_ERRORS, CeleryJobQueue
from service.jobs.records import QUEUE_GPU, TASK_ALLOCATE
from service.settings import Settings, get_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLIENTS = 40
BURST_S = 5.0
DEADLINE_S = 1.0
GRACE_S = 3


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("probes")
    running = start_stack(folder, folder, worker=False)
    yield running
    stop_stack(running)


def test_readyz_burst_leaves_the_api_serving(idle: Stack) -> None:
    """40 clients loop /readyz for 5 s with no worker; then GET /jobs/<unknown> answers 404 within
    1 s. (The old sync route nested two acquisitions from Celery's 10-connection broker pool per
    thread: ten concurrent checks deadlocked it and every thread-pool route hung for good.)"""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + BURST_S

    def client() -> None:
        with httpx.Client(base_url=idle.api.url, timeout=10) as http:
            while time.monotonic() < deadline:
                try:
                    status = http.get("/readyz").status_code
                except httpx.TimeoutException:
                    status = 0
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with idle.api.client() as http:
        answer = http.get("/jobs/0123456789abcdef", timeout=1.0)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "job_not_found"
    # No worker: every check is an honest 503 with a JSON body, never a hang.
    assert set(statuses) == {503}, statuses
    with httpx.Client(base_url=idle.api.url, timeout=5) as http:
        body = http.get("/readyz").json()
    assert body["error"]["code"] == "no_workers"


def test_healthz_turns_red_when_the_thread_pool_is_wedged() -> None:
    """Real uvicorn in this process, with one extra route that holds its thread until released:
    once every thread of the pool holds one, /healthz answers 503 within its deadline (it used to
    answer 200 from the event loop while every sync route hung), and 200 again after."""
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: Settings(health_timeout_s=DEADLINE_S, api_keys=[])
    entered, release = threading.Semaphore(0), threading.Event()

    @app.get("/hold")
    def hold() -> None:
        entered.release()
        release.wait(60)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{port}"
    try:
        live = wait_until(lambda: httpx.get(url + "/healthz", timeout=5).json(), 30, "API up")
        assert live["status"] == "ok" and live["threads"]["busy"] == 0
        size = live["threads"]["size"]
        holders = [threading.Thread(target=_get_quietly, args=(url + "/hold",)) for _ in range(size)]
        for t in holders:
            t.start()
        for _ in range(size):  # every thread of the pool has entered /hold
            assert entered.acquire(timeout=30)
        started = time.monotonic()
        red = httpx.get(url + "/healthz", timeout=30)
        took = time.monotonic() - started
        assert red.status_code == 503, red.text
        error = red.json()["error"]
        assert error["code"] == "threads_exhausted"
        assert f"{size} of {size} threads busy" in error["message"]
        assert took < DEADLINE_S + 2  # its deadline, plus room for a loaded machine
        release.set()
        for t in holders:
            t.join(timeout=30)
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        release.set()
        server.should_exit = True
        serving.join(timeout=30)


def test_sigterm_ends_the_api_within_the_grace_with_a_stuck_thread(idle: Stack, tmp_path: Path) -> None:
    """Plain `uvicorn` (no graceful-shutdown timeout of its own) with a request stuck in a thread
    for good: uvicorn alone waits for that connection forever; the app ends the process once
    HETEROLORA_SHUTDOWN_GRACE_S has passed since SIGTERM."""
    env = {**idle.env, "HETEROLORA_SHUTDOWN_GRACE_S": str(GRACE_S)}
    api = StuckApi(env, tmp_path / "api.log").start()
    assert api.proc is not None
    stuck = threading.Thread(target=lambda: _get_quietly(api.url + "/stuck"), daemon=True)
    stuck.start()
    wait_until(lambda: httpx.get(api.url + "/healthz", timeout=5).json()["threads"]["busy"] == 1, 30, "stuck")
    api.proc.send_signal(signal.SIGTERM)
    try:
        code = api.proc.wait(timeout=GRACE_S + 10)  # the grace, plus room for a loaded machine
    finally:
        api.stop()
    assert code == EXIT_AFTER_GRACE
    assert "shutdown grace elapsed" in (tmp_path / "api.log").read_text()


class StuckApi(Api):
    def command(self) -> list[str]:
        serve = ["devtools.stuck_api:app", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        return [sys.executable, "-m", "uvicorn", *serve]


def _get_quietly(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=60)


def test_plain_uvicorn_without_keys_refuses_a_reachable_address(tmp_path: Path) -> None:
    """`uvicorn service.api.app:app --host 0.0.0.0` without keys (the guard used to live only in
    `heterolora serve`): the app stops the process by itself. With HETEROLORA_AUTH=disabled it
    serves, and says so in its log."""
    env = env_for(None, tmp_path, HETEROLORA_API_KEYS=None)
    refused = OpenApi(env, tmp_path / "refused.log")
    refused.proc = subprocess.Popen(refused.command(), env=env, stdout=refused.log.open("ab"), stderr=subprocess.STDOUT)
    try:
        refused.proc.wait(timeout=60)
    finally:
        refused.stop()
    assert "refusing to serve on 0.0.0.0" in refused.log.read_text()
    open_env = {**env, "HETEROLORA_AUTH": "disabled"}
    opened = OpenApi(open_env, tmp_path / "open.log").start()
    try:
        assert httpx.get(opened.url + "/healthz", timeout=10).status_code == 200
    finally:
        opened.stop()
    assert "authentication is DISABLED" in opened.log.read_text()


class OpenApi(Api):
    def command(self) -> list[str]:
        serve = ["service.api.app:app", "--host", "0.0.0.0", "--port", str(self.port), "--log-level", "warning"]
        return [sys.executable, "-m", "uvicorn", *serve]


def test_sending_a_job_with_redis_away_fails_fast_and_recovers(tmp_path: Path) -> None:
    """A broker connection already open (a cancel used it), then Redis goes away: the send used
    to subscribe to the task's result channel first, retry that for about 20 s in the request
    thread and fail with a RuntimeError (a 500), "The Celery application must be restarted"."""
    server = RedisServer(tmp_path).start()
    queue = CeleryJobQueue(server.url, Settings(redis_url=server.url))
    try:
        queue._revoke("earlier")  # DELETE /jobs/{id}: opens the broker connection
        server.stop()
        started = time.monotonic()
        with pytest.raises(BROKER_ERRORS):
            queue.celery.send_task(TASK_ALLOCATE, args=[{}], task_id="during", queue=QUEUE_GPU)
        assert time.monotonic() - started < 5
        server.start()  # same port: sending works again without a restart
        queue.celery.send_task(TASK_ALLOCATE, args=[{}], task_id="after", queue=QUEUE_GPU)
    finally:
        queue.close()
        server.stop()
