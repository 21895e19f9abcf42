"""Service and worker pieces that need no sockets: model policy, settings, the Celery state
mapping, the memory store, error bodies, and what each module may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from starlette.requests import Request

from heterolora.errors import BudgetError, ConfigError, ModelNotAllowedError
from service.api.deps import require_api_key
from service.api.policy import check_model
from service.errors import Unauthorized, _validation_body
from service.jobs.celery_app import celery_config
from service.jobs.celery_queue import run_state
from service.jobs.queue import Caller
from service.jobs.records import JobError
from service.jobs.store import MemoryStore, safe_url
from service.settings import Settings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 16


def settings(**over: object) -> Settings:
    return Settings.model_validate({"model_allowlist": "minilm,acme/*", "api_keys": KEY} | over)


def test_hub_ids_follow_the_allowlist() -> None:
    s = settings()
    check_model("minilm", s)
    check_model("acme/tiny", s)
    with pytest.raises(ModelNotAllowedError, match="not in HETEROLORA_MODEL_ALLOWLIST"):
        check_model("other/model", s)
    for bad in ("a b", "-x", "acme/..", "acme/.hidden"):
        with pytest.raises(ConfigError) as exc:
            check_model(bad, s)
        assert exc.value.field == "model_id"


def test_local_paths_only_under_model_dirs(tmp_path: Path) -> None:
    allowed = tmp_path / "models"
    (allowed / "tiny").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    s = settings(model_dirs=str(allowed))
    check_model(str(allowed / "tiny"), s)
    check_model(str(allowed / "not-yet-there"), s)  # existence is the worker's question
    for bad in (str(allowed), str(allowed / "escape"), f"{allowed}/../secret", str(outside), "./tiny", "~/m"):
        with pytest.raises(ModelNotAllowedError):
            check_model(bad, s)
    with pytest.raises(ModelNotAllowedError, match="disabled"):
        check_model(str(allowed / "tiny"), settings())


def test_settings_parse_and_refuse_unsafe_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HETEROLORA_API_KEYS", f"{KEY}, {'x' * 20} ,")
    monkeypatch.setenv("HETEROLORA_MODEL_DIRS", "/models,/data/models")
    s = Settings()
    assert s.api_keys == [KEY, "x" * 20] and s.model_dirs == ["/models", "/data/models"]
    assert s.model_allowlist == ["*"] and s.max_samples == 4096 and s.result_ttl_s == 7 * 24 * 3600
    assert s.embedded
    for bad in ({"api_keys": "short"}, {"model_dirs": "relative/dir"}, {"max_wait_s": 61}):
        with pytest.raises(ValidationError):
            settings(**bad)
    with pytest.raises(ValidationError, match="soft_time_limit_s < time_limit_s < visibility_timeout_s"):
        WorkerSettings(time_limit_s=100, visibility_timeout_s=50)


def test_celery_config_is_at_least_once() -> None:
    conf = celery_config(WorkerSettings(visibility_timeout_s=30, time_limit_s=20, soft_time_limit_s=10))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1 and conf["task_routes"] == {"heterolora.allocate": {"queue": "gpu"}}
    assert conf["broker_transport_options"]["visibility_timeout"] == 30
    assert conf["result_expires"] == 7 * 24 * 3600


def test_celery_states_never_leak() -> None:
    meta = {"fraction": 0.5, "phase": "scoring 2/4", "started_at": "t0"}
    assert run_state("PENDING", None, None).status == "queued"
    assert run_state("RETRY", None, None).status == "queued"
    running = run_state("PROGRESS", meta, None)
    assert (running.status, running.fraction, running.phase, running.started_at) == (
        "running",
        0.5,
        "scoring 2/4",
        "t0",
    )
    done = run_state("SUCCESS", {"plan": {"x": 1}, "started_at": "t0"}, "t1")
    assert (done.status, done.plan, done.finished_at) == ("succeeded", {"x": 1}, "t1")
    assert run_state("REVOKED", None, "t1").status == "cancelled"
    failed = run_state("FAILURE", JobError("invalid_budget", "too big", "budget"), "t1")
    assert failed.error == {"code": "invalid_budget", "message": "too big", "field": "budget"}
    assert run_state("FAILURE", SoftTimeLimitExceeded(), None).error["code"] == "timeout"
    assert run_state("FAILURE", KeyError("x"), None).error == {"code": "internal_error", "message": "KeyError: 'x'"}


def test_job_error_survives_the_result_backend_round_trip() -> None:
    from worker.app import celery_app

    backend = celery_app.backend
    stored = backend.prepare_exception(JobError("model_not_found", "no such model", "model_id"))
    rebuilt = backend.exception_to_python(stored)
    assert type(rebuilt) is JobError
    assert (rebuilt.code, rebuilt.message, rebuilt.field) == ("model_not_found", "no such model", "model_id")


def test_memory_store_contract() -> None:
    store = MemoryStore(ttl_s=60)
    assert store.put("k", "a", only_new=True) and not store.put("k", "b", only_new=True)
    assert not store.swap("k", "b", "c") and store.swap("k", "a", "c") and store.get("k") == "c"
    store.delete("k")
    assert store.get("k") is None
    expired = MemoryStore(ttl_s=-1)
    expired.put("k", "a")
    assert expired.get("k") is None


def test_validation_errors_name_the_field() -> None:
    extra = {"type": "extra_forbidden", "loc": ("body", "samples", 0, "lbl"), "msg": "Extra inputs are not permitted"}
    assert _validation_body(extra) == (
        422,
        "invalid_request",
        "samples.0.lbl: Extra inputs are not permitted",
        "samples.0.lbl",
    )
    cause = {"type": "value_error", "loc": ("body",), "msg": "x", "ctx": {"error": BudgetError("big", field="budget")}}
    assert _validation_body(cause) == (422, "invalid_budget", "big", "budget")
    assert _validation_body({"type": "json_invalid", "loc": ("body", 1), "msg": "x"})[:2] == (400, "invalid_json")


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": []})


def test_bearer_keys_name_the_caller() -> None:
    other = "o" * 24
    s = settings(api_keys=f"team-a:{KEY},{other}")
    caller = require_api_key(_request(), s, f"Bearer {KEY}")
    assert caller.name == "team-a" and len(caller.tenant) == 32 and KEY not in caller.tenant
    plain = require_api_key(_request(), s, f"Bearer {other}")
    assert plain.name.startswith("key-") and other not in plain.name and plain.tenant != caller.tenant
    assert require_api_key(_request(), settings(api_keys=""), None) == Caller()  # auth off
    for header in (None, KEY, f"Basic {KEY}", "Bearer wrong-key-000000000", "Bearer ", "Bearer team-a"):
        with pytest.raises(Unauthorized):
            require_api_key(_request(), s, header)
    with pytest.raises(ValidationError):
        settings(api_keys=f"a:{KEY},a:{other}")  # names must be distinct


def test_redis_url_credentials_stay_out_of_messages() -> None:
    assert safe_url("redis://:hunter2@cache.internal:6380/1") == "cache.internal:6380/1"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_service_never_imports_worker_tasks_or_torch() -> None:
    for path in (ROOT / "service").rglob("*.py"):
        assert not {"worker.tasks", "torch"} & _imports(path), path
    code = (
        "import sys, service.api.app, service.jobs.celery_queue, worker.app;"
        "print(sorted(m for m in ('torch', 'transformers', 'worker.tasks', 'service.jobs.run') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_task_retries_only_transient_errors() -> None:
    from worker.tasks import TRANSIENT_ERRORS, allocate

    assert allocate.name == "heterolora.allocate" and allocate.throws == (JobError,)
    assert allocate.autoretry_for == TRANSIENT_ERRORS and allocate.max_retries == 3
    for error in (JobError, ConfigError, BudgetError, ModelNotAllowedError, ValueError, KeyError):
        assert not issubclass(error, TRANSIENT_ERRORS), error


def test_metrics_key_protects_metrics() -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.settings import get_settings

    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings(metrics_key="m" * 20)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 20})
        assert ok.status_code == 200 and "heterolora_http_requests_total" in ok.text


def test_error_messages_lose_server_paths_but_keep_the_clients() -> None:
    from service.jobs.execute import scrub_paths

    message = "cannot load model '/models/x': no file /models/x/config.json; cache at /root/.cache/hf/hub"
    assert scrub_paths(message, "/models/x") == (
        "cannot load model '/models/x': no file /models/x/config.json; cache at <server path>"
    )
    assert scrub_paths("see https://huggingface.co/acme/tiny", "acme/tiny") == "see https://huggingface.co/acme/tiny"


def test_logs_are_json_lines_or_text(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from service import logs

    logs.configure("json")
    handler = logging.getLogger(logs.LOGGER).handlers[0]
    record = logging.LogRecord(logs.LOGGER, logging.INFO, __file__, 1, "job phase", (), None)
    record.fields = {"job_id": "j1", "key": "team-a", "phase": "score"}
    line = json.loads(handler.format(record))
    assert (line["event"], line["job_id"], line["key"], line["level"]) == ("job phase", "j1", "team-a", "info")
    logs.configure("text")
    text = logging.getLogger(logs.LOGGER).handlers[0].format(record)
    assert text.endswith("job phase job_id=j1 key=team-a phase=score") and not text.startswith("{")


def test_job_stats_export_as_counters_and_cumulative_histograms() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from service.jobs.stats import JobStats, StoreCollector

    store = MemoryStore(ttl_s=60)
    stats = JobStats(store)
    stats.count("jobs_finished", status="failed", code="worker_lost")
    stats.count("model_cache_hits", 2)
    for seconds in (0.05, 0.7, 100.0):
        stats.observe("score", seconds)
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    text = generate_latest(registry).decode()
    assert 'heterolora_jobs_finished_total{code="worker_lost",status="failed"} 1.0' in text
    assert "heterolora_model_cache_hits_total 2.0" in text and "heterolora_model_cache_misses_total 0.0" in text
    assert 'heterolora_job_phase_seconds_bucket{le="0.1",phase="score"} 1.0' in text
    assert 'heterolora_job_phase_seconds_bucket{le="1.0",phase="score"} 2.0' in text
    assert 'heterolora_job_phase_seconds_bucket{le="+Inf",phase="score"} 3.0' in text
    assert 'heterolora_job_phase_seconds_sum{phase="score"} 100.75' in text


def test_every_code_the_service_sends_is_in_the_one_table() -> None:
    import re

    from heterolora.error_codes import ERROR_CODES
    from service.errors import HTTP_CODES

    sources = [*(ROOT / "service").rglob("*.py"), *(ROOT / "worker").rglob("*.py")]
    text = "\n".join(p.read_text() for p in sources)
    used = set(re.findall(r'\bcode="([a-z_]+)"', text)) | set(re.findall(r'JobError\(\s*"([a-z_]+)"', text))
    used |= set(HTTP_CODES.values())
    assert {"worker_lost", "queue_full", "rate_limited", "invalid_json"} <= used
    assert used <= set(ERROR_CODES), used - set(ERROR_CODES)
