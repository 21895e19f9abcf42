"""The app's own guard against serving without keys on an address other machines can reach,
whatever server runs it (`heterolora serve`, `uvicorn service.api.app:app`, gunicorn).

Without HETEROLORA_API_KEYS, and unless HETEROLORA_AUTH=disabled (logged loudly), the app:
- refuses to start when the process already listens on a non-loopback address (gunicorn, or
  uvicorn with --workers/--fd: the socket exists before the app starts);
- stops the process when it finds one just after start (plain uvicorn binds after startup);
- answers 401 to any request that arrives on a non-loopback address meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
from typing import Any

from service.logs import event

BIND_WAIT_S = 5.0  # how long after startup to look for the server's listening socket
NO_KEYS = "no API keys (HETEROLORA_API_KEYS)"
HOW_TO = "Set HETEROLORA_API_KEYS (docs/service.md, Security), or HETEROLORA_AUTH=disabled to run open on purpose"


class Exposed(RuntimeError):
    """Keys are missing and the API is reachable from other machines."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_guard(settings: Any) -> bool:
    return not settings.api_keys and settings.auth != "disabled"


def check_exposure(settings: Any, host: str) -> str | None:
    """Raise Exposed for an open API on a reachable address; else the warning to print, if any."""
    if settings.api_keys:
        return None
    if settings.auth == "disabled":
        return (
            f"WARNING: authentication is disabled (HETEROLORA_AUTH=disabled): anyone who reaches {host} can use the API"
        )
    if not is_loopback(host):
        raise Exposed(f"no API keys: refusing to serve on {host}, which other machines may reach. {HOW_TO}")
    return f"WARNING: {NO_KEYS}: serving on loopback {host} only, without authentication"


def listening_hosts() -> list[str]:
    """The addresses this process listens on (TCP, IPv4 or IPv6), read from its open sockets."""
    folder = next((f for f in ("/proc/self/fd", "/dev/fd") if os.path.isdir(f)), None)
    hosts = []
    for name in os.listdir(folder) if folder else []:
        try:
            fd = os.dup(int(name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:  # not a socket
            os.close(fd)
            continue
        with sock, contextlib.suppress(OSError):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN
            ):
                hosts.append(sock.getsockname()[0])
    return hosts


def check_listening(settings: Any) -> None:
    """Raise Exposed when the process listens on a non-loopback address without keys."""
    for host in listening_hosts():
        check_exposure(settings, host)


def on_startup(settings: Any) -> asyncio.Task[None] | None:
    """Run at app startup: refuse, warn, or start the check that follows the server's bind."""
    if not settings.api_keys and settings.auth == "disabled":
        event(
            "authentication is DISABLED (HETEROLORA_AUTH=disabled): anyone who reaches the API can use it",
            logging.WARNING,
        )
    if not needs_guard(settings):
        return None
    try:
        check_listening(settings)
    except Exposed as exc:
        event("refusing to start", logging.CRITICAL, reason=str(exc))
        raise
    return asyncio.get_running_loop().create_task(_after_bind(settings))


async def _after_bind(settings: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BIND_WAIT_S
    while loop.time() < deadline:
        await asyncio.sleep(0.1)
        try:
            if not listening_hosts():
                continue
            check_listening(settings)
            return
        except Exposed as exc:
            event("refusing to serve: stopping", logging.CRITICAL, reason=str(exc))
            os.kill(os.getpid(), signal.SIGTERM)
            return


class ExposureGuard:
    """ASGI middleware: 401 for a request that reaches a keyless API on a non-loopback address."""

    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        server = scope.get("server") if scope["type"] == "http" else None
        if server and needs_guard(self.settings()) and _reachable(str(server[0])):
            from service.errors import error_response

            message = f"{NO_KEYS}: this API serves loopback only. {HOW_TO}"
            await error_response(401, "unauthorized", message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _reachable(host: str) -> bool:
    """A local address other machines may use (a name such as a test client's is not one)."""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
