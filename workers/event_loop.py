"""The worker's event loop: one thread on which runs that wait on I/O are awaited side by side.

A run whose every step is inline or has an asynchronous implementation (http.request) needs no
thread of its own: hundreds of them waiting on HTTP share this one, where as many threads would
spend their time handing the GIL and the connection pool's lock to each other. Runs with any other
step keep their own thread (workers/dispatch.py).

The loop must stay responsive: a tick every `_TICK_S` tells its LoopHealth it is, so a step that
holds the loop (it should not: asynchronous tools await their I/O) shows as an unhealthy
`event_loop` on the worker's row and in `ordo_worker_loop_healthy`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from engine.tools import http, remote
from workers.health import LoopHealth

__all__ = ["EventLoop"]

_TICK_S = 1.0


class EventLoop:
    def __init__(self, health: LoopHealth, log: Any) -> None:
        self.health = health
        self.log = log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(self._loop,), name="event-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on the loop. Thread-safe. What it raises is logged; it should raise nothing."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the worker's event loop is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.add_done_callback(self._log_failure)

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the loop: close its HTTP clients, cancel what still runs (the worker has already
        given those runs' leases up), and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._wind_down(), loop).result(timeout_s)
        except Exception:  # a client that fails to close must not stop the shutdown
            self.log.exception("event_loop_wind_down_failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(self._tick, loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.health.ok()
        loop.call_later(_TICK_S, self._tick, loop)

    async def _wind_down(self) -> None:
        current = asyncio.current_task()
        running = [task for task in asyncio.all_tasks() if task is not current]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await http.close_async_clients()
        await remote.close_async_clients()

    def _log_failure(self, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.health.failed(error)
            self.log.error("event_loop_task_failed", error=f"{type(error).__name__}: {error}")
