"""A worker's database waits that need not hold up its loop under load: the next claim and the
outcome write, each sent from a thread of its own while the main thread goes on running jobs.

Issue 21 (third round): per claim of 100 no-op jobs a worker waited in turn for the claim
(2.0 ms a claim: 0.42 s of a 1.68 s drain of 20,000 jobs, 1 worker) and for its own durable
commit of the slice's outcomes (14 ms each, 0.38 s); its loop and its marks backend were each
busy only a third to a half of the time. Here the next claim is sent when half a full claim is
left, and a slice's outcomes are written while the next slice runs; their results are taken
back on the main thread (`poll` after each job, `wait` where the loop needs them), which alone
touches the worker's state and tells the completer.

Each call runs on its own connection, opened on the thread when first needed and dropped after
a failure (the next call opens a new one); one call of each kind at a time.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable


class Overlapped:
    """One kind of call (`claim` or `write`) running off the main thread, one at a time: start
    it, then take its result back with `poll` (never blocks) or `wait`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._future: concurrent.futures.Future | None = None
        self.context: Any = None  # what the caller needs with the result (the batch written)

    @property
    def busy(self) -> bool:
        return self._future is not None

    def start(self, call: Callable[[], Any], context: Any = None) -> None:
        if self._future is not None:
            raise RuntimeError(f"{self.name}: a call is still in flight; take its result first")
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self.context = context
        self._future = self._pool.submit(call)

    def poll(self) -> tuple[bool, Any]:
        """(True, result) if the call finished (its exception is raised here), else (False, None)."""
        if self._future is None or not self._future.done():
            return False, None
        return True, self._take(None)

    def wait(self, timeout: float | None = None) -> Any:
        """The call's result (None if none is in flight); its exception is raised here."""
        if self._future is None:
            return None
        return self._take(timeout)

    def _take(self, timeout: float | None) -> Any:
        future = self._future
        try:
            return future.result(timeout)
        finally:
            if future.done():
                self._future = None

    def close(self) -> None:
        """Stop the thread once the call in flight (if any) ends; its result is dropped."""
        pool, self._pool = self._pool, None
        self._future = None
        if pool is not None:
            pool.shutdown(wait=False)
