"""`heterolora serve` and `heterolora worker`. The service and worker packages load inside the
commands, so importing heterolora never imports them."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import click

SERVICE_MODULES = ("fastapi", "uvicorn", "celery", "redis", "pydantic_settings")  # the [service] extra


def require_service_extra(command: str) -> None:
    """A clear error instead of a traceback when the service extra is not installed."""
    missing = []
    for module in SERVICE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise click.ClickException(
            f"`heterolora {command}` needs the service extra: pip install 'heterolora[service]' "
            f"(missing: {', '.join(missing)})"
        )


def _settings_error(exc: Exception) -> click.ClickException:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        name = "HETEROLORA_" + "_".join(str(p) for p in first["loc"]).upper()
        return click.ClickException(f"invalid setting {name}: {first['msg']}")
    return click.ClickException(str(exc))


def reset_multiprocess_metrics() -> None:
    """prometheus_client's multiprocess mode reads every file in the folder: start it empty."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        Path(folder).mkdir(parents=True, exist_ok=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HETEROLORA_HOST", help="Bind address.")
@click.option("--port", default=8000, show_default=True, type=int, envvar="HETEROLORA_PORT")
@click.option("--workers", default=1, show_default=True, type=int, help="API processes (more than 1 needs Redis).")
@click.option("--log-level", default="info", show_default=True)
def serve_cmd(host: str, port: int, workers: int, log_level: str) -> None:
    """Start the HTTP API under uvicorn.

    With HETEROLORA_REDIS_URL set, jobs go to Celery workers (`heterolora worker`). Without it,
    jobs run inside this process: single-machine mode, same API. Without HETEROLORA_API_KEYS the
    API serves only on a loopback address (unless HETEROLORA_AUTH=disabled).
    """
    require_service_extra("serve")
    import uvicorn

    from service.settings import get_settings

    try:
        settings = get_settings()
    except ValueError as exc:
        raise _settings_error(exc) from None
    if settings.embedded and workers > 1:
        raise click.UsageError("single-machine mode keeps jobs in memory: use --workers 1 or set HETEROLORA_REDIS_URL")
    from service.api.exposure import Exposed, check_exposure

    try:
        warning = check_exposure(settings, host)
    except Exposed as exc:
        raise click.UsageError(str(exc)) from None
    if warning:
        click.echo(warning, err=True)
    reset_multiprocess_metrics()
    mode = "celery workers via Redis" if settings.redis_url else "single-machine mode (jobs run in this process)"
    click.echo(f"heterolora API on http://{host}:{port}: {mode}", err=True)
    # In-flight requests get half the grace; the app ends the process when the whole grace is up.
    graceful_s = settings.shutdown_grace_s / 2
    uvicorn.run(
        "service.api.app:app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_s,
    )


@click.command("worker")
@click.option("--concurrency", "-c", default=1, show_default=True, type=int, help="Jobs at once (1 per GPU).")
@click.option("--queue", "-Q", default="gpu", show_default=True)
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True)
@click.option("--hostname", "-n", default=None, help="Node name, e.g. gpu0@%h.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker_cmd(concurrency: int, queue: str, pool: str, hostname: str | None, loglevel: str) -> None:
    """Start a Celery worker that plans jobs from Redis (HETEROLORA_REDIS_URL)."""
    require_service_extra("worker")
    from service.settings import get_worker_settings

    try:
        settings = get_worker_settings()
    except ValueError as exc:
        raise _settings_error(exc) from None
    if not settings.redis_url:
        raise click.ClickException("HETEROLORA_REDIS_URL is not set: a worker needs Redis")
    from worker.app import celery_app

    # Gossip and mingle only sync revokes between workers; cancels use a Redis flag instead.
    argv = ["worker", "-Q", queue, "-c", str(concurrency), "--pool", pool, "--loglevel", loglevel]
    argv += ["--without-gossip", "--without-mingle"]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main(argv)
