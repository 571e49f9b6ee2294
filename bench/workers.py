"""Load generators run in processes of their own (never inside the process they measure)."""

import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import multiprocessing.synchronize
import traceback
from collections.abc import Callable
from typing import Any

# "spawn": a fresh interpreter, sharing no sockets, threads or event loop with the runner.
CONTEXT = multiprocessing.get_context("spawn")

Event = multiprocessing.synchronize.Event


def new_event() -> Event:
    """An event the runner and its workers can both see."""
    return CONTEXT.Event()


def _call(
    queue: "multiprocessing.queues.Queue[tuple[bool, Any]]", target: Callable[..., Any], args: Any
) -> None:
    try:
        queue.put((True, target(*args)))
    except BaseException:
        queue.put((False, traceback.format_exc()))


class Worker:
    """`target(*args)` running in its own process; `result()` waits for what it returns."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self._queue: multiprocessing.queues.Queue[tuple[bool, Any]] = CONTEXT.Queue()
        self._process = CONTEXT.Process(target=_call, args=(self._queue, target, args), daemon=True)
        self._process.start()

    @property
    def pid(self) -> int | None:
        """Its process id."""
        return self._process.pid

    def running(self) -> bool:
        """True while its process runs."""
        return self._process.is_alive()

    def result(self, timeout_s: float) -> Any:
        """What the target returned; raises if it failed or took longer than `timeout_s`."""
        try:
            ok, value = self._queue.get(timeout=timeout_s)
        except Exception as error:
            self.stop()
            raise RuntimeError(f"a load process gave no result within {timeout_s:.0f}s") from error
        self._process.join(timeout=10)
        if not ok:
            raise RuntimeError(f"a load process failed:\n{value}")
        return value

    def stop(self) -> None:
        """End it if it still runs (by its own PID)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)


def run(target: Callable[..., Any], *args: Any, timeout_s: float) -> Any:
    """Run `target(*args)` in its own process and return its result."""
    worker = Worker(target, *args)
    try:
        return worker.result(timeout_s)
    finally:
        worker.stop()
