"""The real service stack for tests and benchmarks: redis-server on a free port, `heterolora
worker` (Celery) subprocesses, `heterolora serve` (uvicorn) on a free port, and a tiny BERT saved
to a folder. The pytest fixtures built on it are in tests/integration/stack_fixtures.py."""

from __future__ import annotations

import os
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
API_KEY = "test-key-0123456789abcdef"
KEY_NAME = "team-test"
OTHER_KEY = "other-key-0123456789abcdef"  # a second tenant
OTHER_NAME = "team-other"
MAX_SAMPLES = 64
MAX_BODY_BYTES = 200_000
JOB_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError):
            result = None
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the process group (a prefork worker has a child), then reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class RedisServer:
    """`persist`: keep the data in an append-only file, so a restart finds it again."""

    def __init__(self, folder: Path, persist: bool = False) -> None:
        self.folder = folder
        self.persist = persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes" if self.persist else "no"]
        self.proc = subprocess.Popen(
            [*args, "--dir", str(self.folder)], stdout=subprocess.DEVNULL, start_new_session=True
        )
        wait_until(self._answers, 10, "redis-server up")
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def env_for(redis_url: str | None, model_root: Path, **extra: str | None) -> dict[str, str]:
    """The environment of every stack process; an `extra` value of None removes that variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HETEROLORA_")}
    env.update(
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",  # two shared cores: keep each process to one
        HETEROLORA_MODEL_DIRS=str(model_root),
        HETEROLORA_MODEL_ALLOWLIST="minilm,acme/*",
        HETEROLORA_MAX_SAMPLES=str(MAX_SAMPLES),
        HETEROLORA_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        HETEROLORA_API_KEYS=f"{KEY_NAME}:{API_KEY},{OTHER_NAME}:{OTHER_KEY}",
        HETEROLORA_DEVICE="cpu",
        HETEROLORA_RATE_LIMIT_PER_MINUTE="0",  # the limits tests run their own stack
    )
    if redis_url:
        env["HETEROLORA_REDIS_URL"] = redis_url
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start_worker(
    env: dict[str, str], log: Path, name: str, crashing: bool = False, concurrency: int = 1
) -> subprocess.Popen:
    """`heterolora worker`; `crashing`: one whose job process dies on devtools.crashing_worker.CRASH_MODEL."""
    launcher = ["-m", "devtools.crashing_worker"] if crashing else ["-m", "heterolora.cli", "worker"]
    cmd = [sys.executable, *launcher, "-n", f"{name}@%h", "--loglevel", "INFO", "-c", str(concurrency)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Api:
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    cwd: Path = REPO

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        serve = ["serve", "--host", self.host, "--port", str(self.port), "--log-level", "warning"]
        return [sys.executable, "-m", "heterolora.cli", *serve]

    def start(self) -> Api:
        cmd = self.command()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(lambda: httpx.get(self.url + "/healthz", timeout=1).status_code == 200, 60, "API up")
        return self

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def rss_mb(self) -> tuple[float, float]:
        """(resident, peak resident) memory of the API process in MB, from /proc."""
        assert self.proc is not None
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines() if ":" in line
        )
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text page (0 when absent)."""
    want = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(name + want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_job(http: httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT_S, until: Callable | None = None) -> dict:
    """Poll GET /jobs/{id} until it ends (or until `until(job)` holds)."""
    done = until or (lambda job: job["status"] in ("succeeded", "failed", "cancelled"))

    def check() -> dict | None:
        job = http.get(f"/jobs/{job_id}").json()
        return job if done(job) else None

    return wait_until(check, timeout, f"job {job_id} done", interval=0.2)


def deliveries(redis_url: str, job_id: str) -> dict[str, int]:
    """The worker's delivery count for a job, read from Redis: {"started": n, "open": m}."""
    from service.jobs.records import deliveries_key

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {k: int(float(v)) for k, v in client.hgetall(deliveries_key(job_id)).items()}
    finally:
        client.close()


def received(log: Path, job_id: str) -> int:
    """How many times a worker log shows the job delivered."""
    return log.read_text(errors="replace").count(f"heterolora.allocate[{job_id}] received")


def save_tiny_bert(folder: Path) -> Path:
    """A 2-layer, hidden-32 BERT (random, seed 0; the shape of tests/conftest.py's tiny "bert")
    with a 73-token WordPiece vocabulary (its ids fit the 128-id embedding)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase, *string.digits]
    vocab += ["##" + c for c in string.ascii_lowercase] + list(".,!?'-")
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    return folder


@dataclass
class Stack:
    redis: RedisServer
    api: Api
    worker: subprocess.Popen | None
    worker_log: Path
    env: dict[str, str]
    model_root: Path

    @property
    def tiny(self) -> str:
        return str(self.model_root / "tiny-bert")


def start_stack(
    folder: Path,
    model_root: Path,
    *,
    worker: bool = True,
    crashing: bool = False,
    concurrency: int = 1,
    persist: bool = False,
    **extra: str | None,
) -> Stack:
    """Redis (`persist`: on an append-only file), the API and (unless `worker=False`: jobs then
    stay queued) one worker."""
    redis_server = RedisServer(folder, persist).start()
    env = env_for(redis_server.url, model_root, **extra)
    worker_log = folder / "worker.log"
    proc = start_worker(env, worker_log, "w1", crashing=crashing, concurrency=concurrency) if worker else None
    api = Api(env, folder / "api.log").start()
    if worker:
        wait_until(lambda: httpx.get(api.url + "/readyz", timeout=3).status_code == 200, 90, "a worker ready")
    return Stack(redis_server, api, proc, worker_log, env, model_root)


def stop_stack(stack: Stack) -> None:
    stack.api.stop()
    if stack.worker is not None:
        stop(stack.worker)
    stack.redis.stop()
