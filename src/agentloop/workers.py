"""Daemon threads that run sync tool calls, reused while idle.

A sync tool must not block the event loop, and a stuck one must not hold anything back: not a
later call (as a fixed-size pool's slot would), not ``asyncio.run`` at the end of a sync door
(which joins the default executor), not process exit. So every call gets a daemon thread that
no one else is using: an idle one if there is one, else a new one. A thread goes back to the
idle set when its call returns and ends after ``IDLE_SECONDS`` without work, so a stuck call
only ever costs its own thread, and a run of quick calls costs no thread start per call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

IDLE_SECONDS = 30.0
"""How long an idle worker waits for another call before its thread ends."""

Job = Callable[[], Callable[[], None]]
"""Does the work and returns what delivers its result: that runs once the worker is idle
again, so whoever the result wakes can reuse the thread at once."""


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="agentloop-tool", daemon=True)
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with _lock:
                    if self in _idle:  # nobody took it meanwhile: retire
                        _idle.remove(self)
                        return
                continue  # taken just now: its job is on the way
            deliver = job()
            with _lock:
                _idle.append(self)
            deliver()


_lock = threading.Lock()
_idle: list[_Worker] = []


def start(job: Job) -> None:
    """Run ``job`` (which must not raise) in an idle daemon worker, or in a new one."""
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None:  # the job first: a new thread runs it as soon as it starts
        worker = _Worker()
        worker.jobs.put(job)
        worker.start()
    else:
        worker.jobs.put(job)
