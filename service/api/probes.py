"""What /healthz and /readyz check, and the bounded shutdown (docs/service.md, "Health and probes").

- Readiness: one broker check at a time, on its own thread (never the request thread pool), its
  answer reused for READY_CACHE_S, and a hard READY_TIMEOUT_S after which the answer is a 503.
  A burst of probes therefore costs one Redis ping and one worker ping per second, whatever the
  number of callers.
- Liveness: a no-op through the same thread pool that sync routes use, with a deadline. When the
  pool is wedged, every sync route is too, and liveness says so.
- Shutdown: the first SIGTERM or SIGINT starts a timer; when the server has not finished its
  graceful shutdown after HETEROLORA_SHUTDOWN_GRACE_S (stuck threads, a request that never
  ends), the process exits anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from service.errors import APIError, Unavailable
from service.logs import event

READY_CACHE_S = 1.0
READY_TIMEOUT_S = 3.0
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_AFTER_GRACE = 1  # the exit status when the grace period ran out


class ReadinessProbe:
    """Single-flight, cached readiness: `check` is what the queue calls (it may block)."""

    def __init__(
        self, check: Callable[[], dict[str, Any]], cache_s: float = READY_CACHE_S, timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        self.check = check
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._answer: tuple[float, dict[str, Any] | APIError] | None = None
        self._running: asyncio.Future[dict[str, Any] | APIError] | None = None

    async def __call__(self) -> dict[str, Any]:
        answer = self._cached() or await self._fresh()
        if isinstance(answer, APIError):  # a new exception each time: a raised one grows its traceback
            raise Unavailable(answer.message, code=answer.code)
        return answer

    def _cached(self) -> dict[str, Any] | APIError | None:
        if self._answer is not None and time.monotonic() - self._answer[0] < self.cache_s:
            return self._answer[1]
        return None

    async def _fresh(self) -> dict[str, Any] | APIError:
        loop = asyncio.get_running_loop()
        if self._running is None or self._running.get_loop() is not loop:
            self._running = self._start(loop)  # the one check; later callers wait for the same one
        running = self._running
        try:
            answer = await asyncio.wait_for(asyncio.shield(running), self.timeout_s)
        except TimeoutError:
            # A check that hangs keeps its thread (at most one), so no new check starts until it
            # ends; meanwhile every probe answers 503 within the timeout.
            answer = Unavailable(
                f"the readiness check did not finish within {self.timeout_s:.0f}s", code="readiness_timeout"
            )
        self._answer = (time.monotonic(), answer)
        return answer

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[dict[str, Any] | APIError]:
        future: asyncio.Future[dict[str, Any] | APIError] = loop.create_future()

        def settle(answer: dict[str, Any] | APIError) -> None:
            if self._running is future:
                self._running = None
            if not future.done():
                future.set_result(answer)

        def run() -> None:
            try:
                answer: dict[str, Any] | APIError = self.check()
            except APIError as exc:
                answer = exc
            except Exception as exc:  # an unexpected failure is still "not ready", not a 500
                answer = Unavailable(f"the readiness check failed: {type(exc).__name__}")
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(settle, answer)

        threading.Thread(target=run, name="heterolora-readiness", daemon=True).start()
        return future


def thread_pool() -> dict[str, int]:
    """Busy threads of the pool that runs sync routes, and its size."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    return {"busy": int(limiter.borrowed_tokens), "size": int(limiter.total_tokens)}


async def liveness(deadline_s: float) -> dict[str, Any]:
    """Run a no-op through the request thread pool within `deadline_s`, or raise a 503."""
    started = time.monotonic()
    with anyio.move_on_after(deadline_s) as scope:
        await anyio.to_thread.run_sync(lambda: None, abandon_on_cancel=True)
    threads = thread_pool()
    if scope.cancelled_caught:
        event("liveness failed", threads_busy=threads["busy"], threads=threads["size"])
        raise Unavailable(
            f"the request thread pool ran no task within {deadline_s:g}s "
            f"({threads['busy']} of {threads['size']} threads busy)",
            code="threads_exhausted",
        )
    return {"status": "ok", "threads": threads, "ms": round(1000 * (time.monotonic() - started), 1)}


def install_shutdown_grace(grace_s: float) -> None:
    """On the first SIGTERM/SIGINT, start a timer that ends the process after `grace_s`.

    The server's own handler still runs (chained), so a graceful shutdown that finishes in time
    exits normally. Only the main thread can set handlers; elsewhere (a test client) this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    armed = threading.Event()

    def exit_now() -> None:
        try:
            event("shutdown grace elapsed: exiting", grace_s=grace_s, threads=threading.active_count())
        finally:
            os._exit(EXIT_AFTER_GRACE)

    for sig in SHUTDOWN_SIGNALS:
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            if not armed.is_set():
                armed.set()
                timer = threading.Timer(grace_s, exit_now)
                timer.daemon = True
                timer.start()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # nobody else handles it: what the default would do
                os._exit(128 + signum)

        signal.signal(sig, handler)
