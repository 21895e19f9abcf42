"""Init artifacts through the service (issue 14): the worker stores the file, the API serves it
with ETag = sha256, the SDK downloads and verifies it; small files in Redis, large ones on disk."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from safetensors.torch import load

from devtools.stack import API_KEY, OTHER_KEY, Api, RedisServer, Stack, env_for, wait_job
from heterolora.cli import main
from heterolora.client import Client
from heterolora.init.format import sha256_hex
from heterolora.plans import Plan
from heterolora.samples import builtin_sample
from service.jobs.artifacts import ArtifactSettings, ArtifactStore, ArtifactTooLarge

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures", "embedded_api")  # fixtures: stack, model_root, embedded_api
OPTIONS = {"num_batches": 2, "batch_size": 4, "max_length": 48}


def _request(model_id: str, **extra: object) -> dict:
    return {"model_id": model_id, "samples": builtin_sample()[:16], "budget": {"trainable_params": 3000}} | (
        OPTIONS | extra
    )


def test_worker_stores_and_api_serves_the_init_file(stack: Stack) -> None:
    with Client(stack.api.url, api_key=API_KEY) as client:
        plan = client.plan(stack.tiny, builtin_sample()[:16], {"trainable_params": 3000}, init="gradient", **OPTIONS)
    assert plan.init is not None and plan.init_data is not None
    assert sha256_hex(plan.init_data) == plan.init.sha256 and len(load(plan.init_data)) == 2 * plan.init.modules

    with stack.api.client() as http:
        job_id = http.post("/allocate", json=_request(stack.tiny, init="gradient")).json()["job_id"]
        job = wait_job(http, job_id)
        got = http.get(f"/jobs/{job_id}/adapter.safetensors")
        assert got.status_code == 200 and got.headers["etag"] == f'"{job["plan"]["init"]["sha256"]}"'
        assert got.content == plan.init_data  # same request, same bytes
        etag = got.headers["etag"]
        for tag in (etag, f"W/{etag}", f'"other", W/{etag}', "*"):  # If-None-Match compares weakly
            again = http.get(f"/jobs/{job_id}/adapter.safetensors", headers={"If-None-Match": tag})
            assert again.status_code == 304 and not again.content, tag
        stale = http.get(f"/jobs/{job_id}/adapter.safetensors", headers={"If-None-Match": 'W/"other"'})
        assert stale.status_code == 200 and stale.content == plan.init_data
        # A failed job has finished without a file: 404, not "not finished".
        failed = wait_job(http, http.post("/allocate", json=_request("acme/no-such-model")).json()["job_id"])
        assert failed["status"] == "failed"
        gone = http.get(f"/jobs/{failed['job_id']}/adapter.safetensors")
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "artifact_not_found")
        assert "failed" in gone.json()["error"]["message"]
        drawn = http.get(f"/jobs/{failed['job_id']}/heatmap.png")  # nor a plan to draw
        assert (drawn.status_code, drawn.json()["error"]["code"]) == (404, "artifact_not_found")
        # A plan without init has no file; an unknown job is a 404 like GET /jobs/{id}.
        zero = wait_job(http, http.post("/allocate", json=_request(stack.tiny)).json()["job_id"])
        none = http.get(f"/jobs/{zero['job_id']}/adapter.safetensors")
        assert none.status_code == 404 and none.json()["error"]["code"] == "artifact_not_found"
        assert http.get("/jobs/0123456789abcdef/adapter.safetensors").status_code == 404
    anon = httpx.get(f"{stack.api.url}/jobs/{job_id}/adapter.safetensors")
    assert anon.status_code == 401
    with stack.api.client(OTHER_KEY) as other:  # another API key's job is a 404, as for GET /jobs/{id}
        foreign = other.get(f"/jobs/{job_id}/adapter.safetensors")
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "job_not_found"


def test_large_files_go_to_the_directory_with_the_job_ttl(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        settings = ArtifactSettings(artifact_dir=tmp_path / "artifacts", artifact_inline_max_bytes=10)
        store = ArtifactStore(ArtifactStore.for_redis(redis.url, 60).store, settings)
        assert store.put("small", b"0123456789") == "redis"
        assert store.put("large", b"x" * 11) == "dir"
        assert store.get("small") == b"0123456789" and store.get("large") == b"x" * 11
        assert (tmp_path / "artifacts" / "large.safetensors").read_bytes() == b"x" * 11
        assert store.store.client.ttl(store.key("large")) > 0  # the marker expires with the job
        assert store.get("unknown") is None
        with pytest.raises(ArtifactTooLarge, match="HETEROLORA_ARTIFACT_DIR"):
            ArtifactStore(store.store, ArtifactSettings(artifact_inline_max_bytes=10)).put("big", b"y" * 11)
        with pytest.raises(ValueError, match="bad job id"):
            store.put("../escape", b"z")
    finally:
        redis.stop()


@pytest.fixture()
def embedded_on_disk(tmp_path: Path, model_root: Path) -> Iterator[tuple[Api, Path]]:
    folder = tmp_path / "artifacts"
    env = env_for(None, model_root, HETEROLORA_ARTIFACT_DIR=str(folder), HETEROLORA_ARTIFACT_INLINE_MAX_BYTES="0")
    api = Api(env, tmp_path / "api.log").start()
    yield api, folder
    api.stop()


def test_embedded_mode_serves_from_the_directory_and_refuses_a_changed_file(
    embedded_on_disk: tuple[Api, Path], model_root: Path
) -> None:
    api, folder = embedded_on_disk
    with api.client() as http:
        job = wait_job(
            http, http.post("/allocate", json=_request(str(model_root / "tiny-bert"), init="gradient")).json()["job_id"]
        )
        path = folder / f"{job['job_id']}.safetensors"
        served = http.get(f"/jobs/{job['job_id']}/adapter.safetensors")
        assert served.status_code == 200 and served.content == path.read_bytes()
        path.write_bytes(served.content[:-1] + bytes([served.content[-1] ^ 1]))
        broken = http.get(f"/jobs/{job['job_id']}/adapter.safetensors")
        assert broken.status_code == 503 and broken.json()["error"]["code"] == "artifact_corrupt"


def test_cli_plan_and_show_on_server_save_the_verified_init_file(
    embedded_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_KEY", API_KEY)
    server = ["--server", embedded_api.url, "--api-key-env", "PIPELINE_KEY"]
    fast = ["--num-batches", "2", "--batch-size", "4", "--budget-params", "30000", "--init", "gradient"]
    remote = CliRunner().invoke(main, ["plan", *fast, *server, "--out", str(tmp_path / "remote.json")])
    assert remote.exit_code == 0, remote.output
    plan = Plan.load(tmp_path / "remote.json")  # sha256-checked against remote.safetensors
    assert plan.init is not None and plan.init_data == (tmp_path / "remote.safetensors").read_bytes()
    job_id = remote.stderr.split(f" on {embedded_api.url}")[0].rsplit("job ", 1)[1]
    shown = CliRunner().invoke(main, ["show", job_id, *server, "--out", str(tmp_path / "job.json")])
    assert shown.exit_code == 0, shown.output
    assert Plan.load(tmp_path / "job.json").init_data == plan.init_data

    # An --out that cannot be written: refused before anything is submitted ...
    (tmp_path / "a-file").write_text("")
    refused = CliRunner().invoke(main, ["plan", *fast, *server, "--out", str(tmp_path / "a-file" / "p.json")])
    assert refused.exit_code == 2 and "--out" in refused.output and "job " not in refused.output
    # ... and one that fails only when written (a full disk): one Error line, the plan kept elsewhere.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))  # the fallback lands here
    (tmp_path / "temp").mkdir()
    full = CliRunner().invoke(main, ["show", job_id, *server, "--out", "/dev/full"])
    assert full.exit_code == 1 and "Traceback" not in full.output
    (line,) = [x for x in full.output.splitlines() if x.startswith("Error:")]
    kept = Path(line.split("saved to ")[1].split(" instead")[0])
    assert "No space left on device" in line and kept.parent == tmp_path / "temp"
    assert Plan.load(kept).init_data == plan.init_data
