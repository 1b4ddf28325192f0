"""docs/design.md story 1: a caller keeps a handle to a rate limiter across its restarts.

In the original system the caller kept the limiter's *address* in a reusable query context;
the limiter died, and the next run crashed with "process is not alive". Here the caller keeps
a *name*. We kill the actor behind it again and again; each call either reaches the restarted
actor or fails with a typed error (DeadLetter / NoSuchName) right away. Nothing hangs, nothing
crashes, and an actor killed in the middle of a request gives a DeadLetter, not a timeout.

Run: python examples/dead_letters.py
"""

from __future__ import annotations

import os
import signal
import threading
import time

from rich.console import Console

from supervision import Backoff, ChildSpec, DeadLetter, NoSuchName, Runtime, Server, SupervisorSpec


class Pager(Server):
    """Serves pages of a (pretend) paginated query; slow when asked to be."""

    def handle(self, message):
        kind, value = message
        if kind == "page":
            return [f"row {value * 10 + i}" for i in range(3)]
        if kind == "slow-page":
            time.sleep(value)
            return ["late"]
        if kind == "pid":
            return os.getpid()
        return super().handle(message)


class Query:
    """A reusable query context. It holds the *name* of its helper, never an address."""

    def __init__(self, runtime: Runtime, helper: str = "pager") -> None:
        self.runtime = runtime
        self.helper = helper

    def run(self, pages: int) -> list[str]:
        rows: list[str] = []
        for page in range(pages):
            rows += self.runtime.ask(self.helper, ("page", page), timeout=5.0)
        return rows


def main() -> int:
    console = Console()
    # many restarts in a short time are allowed here, with a short backoff between them
    spec = SupervisorSpec(
        "root", intensity=100, period=1.0, backoff=Backoff(min=0.01, max=0.05), children=[ChildSpec("pager", Pager)]
    )
    with Runtime("multiprocTCPBase", log_level="CRITICAL") as rt:
        rt.start(spec)
        query = Query(rt)
        console.print("first run:", query.run(2))

        results = {"ok": 0, "DeadLetter": 0, "NoSuchName": 0}
        worst = 0.0
        for _ in range(20):
            rt.kill("pager")  # SIGKILL the helper's process
            started = time.monotonic()
            try:
                query.run(1)
                results["ok"] += 1
            except (DeadLetter, NoSuchName) as exc:
                results[type(exc).__name__] += 1
            worst = max(worst, time.monotonic() - started)
        console.print(
            f"of 20 reruns, each right after a SIGKILL of the pager: {results['ok']} reached the restarted pager and "
            f"{results['DeadLetter'] + results['NoSuchName']} failed at once with a typed error (DeadLetter "
            f"{results['DeadLetter']}, NoSuchName {results['NoSuchName']}); none crashed or hung, the slowest took "
            f"{worst * 1000:.0f} ms",
            soft_wrap=False,
        )

        pid = rt.ask("pager", ("pid", None))
        threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
        started = time.monotonic()
        try:
            rt.ask("pager", ("slow-page", 30), timeout=20)
            mid_request = None
        except DeadLetter:
            mid_request = time.monotonic() - started
        if mid_request is not None:
            console.print(
                f"a request in flight when the pager was killed failed with DeadLetter after {mid_request:.2f} s, "
                "not after its 20 s timeout", soft_wrap=False,
            )  # fmt: skip
        time.sleep(0.2)
        console.print(rt.tree())
        return 0 if sum(results.values()) == 20 and mid_request is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
