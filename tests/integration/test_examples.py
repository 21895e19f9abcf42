"""A pipeline user's path, end to end, with real parts: the examples run as scripts, `heterolora
plan/show --server` against a real `heterolora serve` (uvicorn, single-machine mode, API key on),
and the plan a server computes equals the local command's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from devtools.stack import API_KEY, REPO, Api
from heterolora.cli import main
from heterolora.client import Client
from heterolora.plans import Plan
from heterolora.samples import builtin_sample
from heterolora.threads import THREADS_ENV

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures", "embedded_api")  # fixtures: model_root, embedded_api, user_env

EXAMPLES = REPO / "examples"
EXAMPLE_TIMEOUT_S = 300
FAST = ["--num-batches", "2", "--batch-size", "4", "--seed", "7", "--budget-params", "30000"]


def run_example(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S)
    assert res.returncode == 0, f"{args[1]} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def job_id_in(stderr: str, url: str) -> str:
    found = re.search(r"job ([0-9a-f]+) on " + re.escape(url), stderr)
    assert found, stderr[-2000:]
    return found.group(1)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_finetune_with_service_starts_nothing_and_reloads_without_heterolora(
    user_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    args = [sys.executable, str(EXAMPLES / "finetune_with_service.py"), "--steps", "2", "--out", str(out)]
    res = run_example(args, user_env(), tmp_path)
    # The reload ran in a process where heterolora could not be imported, and the logits matched
    # exactly (the example exits non-zero otherwise).
    assert "with PEFT only" in res.stdout and "logits identical" in res.stdout, res.stdout
    plan = Plan.load(out / "plan.json")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["rank_pattern"] == plan.peft.rank_pattern and config["alpha_pattern"] == plan.peft.alpha_pattern
    assert plan.model.id == "minilm" and len(set(plan.ranks.values())) > 1  # heterogeneous ranks


def test_pipeline_step_against_a_running_service(
    embedded_api: Api, user_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    env = user_env(HETEROLORA_SERVER=embedded_api.url, HETEROLORA_API_KEY=API_KEY, STEPS="2")
    res = run_example(["bash", str(EXAMPLES / "pipeline_step.sh"), str(tmp_path / "step")], env, tmp_path)
    plan = Plan.load(tmp_path / "step" / "plan.json")
    job_id = job_id_in(res.stderr, embedded_api.url)
    with embedded_api.client() as http:
        job = http.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and Plan.model_validate(job["plan"]).fingerprint() == plan.fingerprint()
    # The vLLM check ran and named the reason: the classifier reads MiniLM's declared mean pooling.
    assert "NOT compatible" in res.stdout and "pooling the checkpoint declares" in res.stdout
    config = json.loads((tmp_path / "step" / "adapter" / "adapter_config.json").read_text())
    assert config["rank_pattern"] == plan.peft.rank_pattern and "trained 2 steps" in res.stdout


def test_cli_plan_on_server_writes_the_local_plan_file(
    embedded_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the server runs: on the CPU with one thread (OMP_NUM_THREADS=1), so sums add up in its order.
    # The CLI fits torch's threads to the CPUs itself, so the one thread is asked of it by its setting.
    threads = torch.get_num_threads()
    monkeypatch.setenv(THREADS_ENV, "1")
    try:
        local = cli("plan", *FAST, "--device", "cpu", "--out", str(tmp_path / "local.json"))
    finally:
        torch.set_num_threads(threads)
        monkeypatch.delenv(THREADS_ENV)
    assert local.exit_code == 0, local.output
    monkeypatch.setenv("PIPELINE_KEY", API_KEY)
    remote = cli(
        "plan",
        *FAST,
        "--server",
        embedded_api.url,
        "--api-key-env",
        "PIPELINE_KEY",
        "--out",
        str(tmp_path / "remote.json"),
    )
    assert remote.exit_code == 0, remote.output
    want = Plan.load(tmp_path / "local.json")
    assert Plan.load(tmp_path / "remote.json").fingerprint() == want.fingerprint()
    assert remote.stdout == local.stdout  # the same rank table
    assert "scoring" in remote.stderr and "100%" in remote.stderr  # the progress bar, fed by job status
    job_id = job_id_in(remote.stderr, embedded_api.url)

    shown = cli(
        "show",
        job_id,
        "--server",
        embedded_api.url,
        "--api-key-env",
        "PIPELINE_KEY",
        "--out",
        str(tmp_path / "job.json"),
    )
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == local.stdout and f"job {job_id}: succeeded, 100% (done)" in shown.stderr
    assert Plan.load(tmp_path / "job.json").fingerprint() == want.fingerprint()


def test_cli_plan_on_server_sends_the_dtype(embedded_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_KEY", API_KEY)
    out = tmp_path / "bf16.json"
    args = ("--server", embedded_api.url, "--api-key-env", "PIPELINE_KEY", "--dtype", "bfloat16", "--out", str(out))
    res = cli("plan", *FAST, *args)
    assert res.exit_code == 0, res.output
    assert Plan.load(out).settings["weights_dtype"] == "bfloat16"


def test_cli_server_errors_are_one_line(embedded_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    url = embedded_api.url
    monkeypatch.delenv("HETEROLORA_API_KEY", raising=False)
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    monkeypatch.setenv("WRONG_KEY", "not-the-key-0123456789")
    cases = [
        (("plan", *FAST, "--server", url, "--api-key-env", "UNSET_KEY_VAR"), 2, "UNSET_KEY_VAR"),
        (("plan", *FAST, "--server", url), 1, "401 missing API key"),
        (("plan", *FAST, "--server", url, "--api-key-env", "WRONG_KEY"), 1, "401"),
        (("plan", *FAST, "--server", url, "--device", "cpu"), 2, "--device"),
        (("plan", *FAST, "--server", url, "--device-map", "auto"), 2, "--device-map"),
        (("show", "0123456789abcdef", "--server", url, "--api-key-env", "WRONG_KEY"), 1, "401"),
        (("show", "../healthz", "--server", url), 2, "not a job id"),
        (("show", "0123456789abcdef", "--server", "http://[::1"), 2, "not a URL"),
        (("plan", *FAST, "--server", "gpu-box:8000"), 2, "expected http(s)://host"),
    ]
    for args, code, message in cases:
        res = cli(*args)
        assert res.exit_code == code, (args, res.output)
        assert message in res.output and "Traceback" not in res.output, (args, res.output)
    monkeypatch.setenv("PIPELINE_KEY", API_KEY)
    missing = cli("show", "0123456789abcdef", "--server", url, "--api-key-env", "PIPELINE_KEY")
    assert missing.exit_code == 1 and "404" in missing.output
    too_big = cli("plan", *FAST[:6], "--budget-params", str(10**12), "--server", url, "--api-key-env", "PIPELINE_KEY")
    assert too_big.exit_code == 1 and "invalid_budget" in too_big.output, too_big.output
    with Client(url, api_key=API_KEY) as client:  # a cancelled job: no plan, exit 1 with the state
        slow = client.submit("minilm", builtin_sample()[:32], num_batches=8, batch_size=4, seed=41)
        client.cancel(slow.job_id)
    cancelled = cli("show", slow.job_id, "--server", url, "--api-key-env", "PIPELINE_KEY")
    assert cancelled.exit_code == 1 and f"job {slow.job_id}: cancelled" in cancelled.output, cancelled.output
    # A closed port: the SDK retries, then the CLI says so in one line.
    unreachable = cli("plan", *FAST, "--server", "http://127.0.0.1:9", "--api-key-env", "PIPELINE_KEY")
    assert unreachable.exit_code == 1 and "cannot reach" in unreachable.output, unreachable.output
