"""`heterolora plan --server URL` and `heterolora show JOB_ID --server URL`: the same request and
plan file as the local command, computed by a HeteroLoRA service through the SDK.

The API key comes from an environment variable named by `--api-key-env`, never from a flag value
(flags end up in shell history and process listings).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

import click
import httpx
from tqdm import tqdm

from heterolora.cli.files import save_plan
from heterolora.client import Client, JobFailed, JobStatus
from heterolora.client._client import DEFAULT_JOB_TIMEOUT_S
from heterolora.errors import HeteroLoraError
from heterolora.plans import Plan

DEFAULT_API_KEY_ENV = "HETEROLORA_API_KEY"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
ProgressFn = Callable[[float, str], None]


def server_url(value: str) -> str:
    """`--server` as given, once it is an http(s) URL with a host."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise click.BadParameter(f"{value!r} is not a URL: {exc}", param_hint="--server") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise click.BadParameter(f"{value!r}: expected http(s)://host[:port]", param_hint="--server")
    return value


def api_key_from(env_var: str) -> str | None:
    """The key in `env_var`; None when the default variable is unset (a server without auth).
    A variable the user named explicitly must be set."""
    key = os.environ.get(env_var)
    if not key and env_var != DEFAULT_API_KEY_ENV:
        raise click.UsageError(f"--api-key-env {env_var}: that environment variable is not set")
    return key or None


def plan_on_server(
    server: str,
    api_key_env: str,
    model: str,
    samples: list[dict[str, Any]],
    options: dict[str, Any],
    progress: ProgressFn,
    *,
    timeout: float = DEFAULT_JOB_TIMEOUT_S,
) -> Plan:
    """Submit the request the local `plan` would compute, follow the job, return its plan.

    `options` are AllocationConfig fields as the local command builds them; unset ones (None)
    are left out so the server applies the same defaults.
    """
    body = {k: v for k, v in options.items() if v is not None}
    budget = body.pop("budget", None)
    with Client(server_url(server), api_key=api_key_from(api_key_env)) as client:
        job = client.submit(model, samples, budget, **body)
        # For `heterolora show JOB_ID --server`; tqdm.write keeps the progress bar intact.
        tqdm.write(f"job {job.job_id} on {server}", file=sys.stderr)
        job = follow(client, job, progress, timeout)
        return client.fetch_init(job.job_id, finished_plan(job))  # init="gradient": its verified file


def follow(client: Client, job: JobStatus, progress: ProgressFn, timeout: float) -> JobStatus:
    """The SDK's polling, feeding the job's progress to the local progress bar."""
    return client.follow(job, timeout=timeout, on_progress=progress)


def remote_samples(samples: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The rows to send: the local command's default (the built-in sample) travels explicitly."""
    if samples is not None:
        return samples
    from heterolora.samples import builtin_sample

    return builtin_sample()


def finished_plan(job: JobStatus) -> Plan:
    if job.status != "succeeded" or job.plan is None:
        raise JobFailed(job)
    return job.plan


def show_job(server: str, api_key_env: str, job_id: str, out: str | None, *, require_plan: bool) -> Plan | None:
    """Print the job's state (stderr); return its plan once it succeeded, saved to `out` if given.
    A failed or cancelled job is an error (exit 1); so is a queued or running one when the caller
    needs the plan (`require_plan`: --out, --check), else that returns None."""
    if not JOB_ID.fullmatch(job_id):
        raise click.BadParameter(f"{job_id!r} is not a job id", param_hint="JOB_ID")
    try:
        with Client(server_url(server), api_key=api_key_from(api_key_env)) as client:
            job = client.job(job_id)
            if out and job.plan is not None:  # Plan.save writes an init's file too: fetch it
                job.plan = client.fetch_init(job.job_id, job.plan)
    except HeteroLoraError as exc:
        raise click.ClickException(exc.message) from None
    if job.status in ("failed", "cancelled"):
        raise click.ClickException(describe(job))
    click.echo(describe(job), err=True)
    if job.plan is None:
        if require_plan:
            raise click.ClickException(f"job {job.job_id} is {job.status}: no plan yet")
        return None
    if out:
        save_plan(job.plan, out)
    return job.plan


def describe(job: JobStatus) -> str:
    """One line: id, state, progress, and the error for a failed job."""
    line = f"job {job.job_id}: {job.status}, {100 * job.progress.fraction:.0f}% ({job.progress.phase})"
    if job.error is not None:
        line += f": [{job.error.code}] {job.error.message}"
    return line
