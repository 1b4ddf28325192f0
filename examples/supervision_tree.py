"""A supervision tree: strategies, a crash loop that escalates, dynamic children.

Run: python examples/supervision_tree.py
"""

from __future__ import annotations

import os
import time

from rich.console import Console

from supervision import ChildSpec, Runtime, Server, SupervisorSpec


class Cache(Server):
    def init(self):
        self.data = {}

    def handle(self, message):
        op, *rest = message
        if op == "put":
            key, value = rest
            self.data[key] = value
            return "ok"
        if op == "get":
            return self.data.get(rest[0])
        if op == "pid":
            return os.getpid()
        return super().handle(message)


class Flaky(Server):
    """Crashes a moment after every start: its supervisor will give up on it."""

    def init(self):
        self.send_after(0.05, "boom")

    def handle(self, message):
        raise RuntimeError("flaky dependency")


def main() -> int:
    console = Console()
    spec = SupervisorSpec(
        "app",
        strategy="one_for_one",
        intensity=5,
        children=[
            # rest_for_one: if "db" dies, "cache" (started after it, depends on it) restarts too
            SupervisorSpec("storage", strategy="rest_for_one", children=[ChildSpec("db", Cache), ChildSpec("cache", Cache)]),
            # a subtree that crash-loops: it gives up after 2 restarts in 10 s; app then decides
            # by its restart type: temporary, so app lets it go (permanent would restart it, and
            # app would give up in turn once *its* intensity is exceeded)
            SupervisorSpec("flaky-branch", intensity=2, period=10.0, restart="temporary", children=[ChildSpec("flaky", Flaky)]),
            SupervisorSpec("workers", strategy="simple_one_for_one", children=[ChildSpec("worker", Cache)]),
        ],
    )
    with Runtime("multiprocTCPBase", log_level="CRITICAL") as rt:
        rt.start(spec)
        for _ in range(3):
            rt.start_child("workers")
        rt.ask("cache", ("put", "greeting", "hello"))
        console.print("started:", rt.tree())

        console.print("\n[bold]SIGKILL db[/]: rest_for_one restarts db and cache (cache loses its data)")
        rt.kill("db")
        _wait(lambda: rt.tree()["cache"].restarts == 1 and rt.tree()["cache"].status == "running")
        remembered = rt.ask("cache", ("get", "greeting"))

        console.print("\n[bold]waiting for flaky-branch to give up[/] (3 crashes within 10 s) ...")
        _wait(lambda: "flaky-branch" not in rt.tree(), timeout=15)
        tree = rt.tree()
        console.print(tree)
        console.print("\nchildren of workers:", rt.which_children("workers"))
        others = [name for name in ("storage", "workers") if tree[name].status == "running"]
        workers = rt.count_children("workers")["active"]
        console.print(
            f"\nwhat this showed: killing db restarted db and cache together (restarts: db {tree['db'].restarts}, "
            f"cache {tree['cache'].restarts}), and the new cache remembered {remembered!r} for 'greeting' (its data went "
            f"with the old process); flaky-branch crashed until it gave up, and app let it go because it is "
            f"temporary, while its other {len(others)} subtrees kept running; workers has {workers} dynamic children.",
            soft_wrap=False,
        )
        return 0 if remembered is None and len(others) == 2 and "flaky-branch" not in tree else 1


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - retried until the deadline
            pass
        time.sleep(0.05)
    raise TimeoutError("the tree did not reach the expected state")


if __name__ == "__main__":
    raise SystemExit(main())
