"""`thespian-otp demo`: start a supervision tree, crash a child, and show the tree recovering."""

from __future__ import annotations

import time

from rich.console import Console

from supervision import ChildSpec, Runtime, Server, SupervisorSpec


class Greeter(Server):
    """Says hello; crashes on request, to show a restart."""

    def init(self, greeting: str = "hello") -> None:
        self.greeting = greeting
        self.count = 0

    def handle(self, message):
        if message == "crash":
            raise RuntimeError("asked to crash")
        self.count += 1
        return f"{self.greeting}, {message} (#{self.count})"


def demo_spec() -> SupervisorSpec:
    return SupervisorSpec(
        name="root",
        strategy="one_for_one",
        children=[
            ChildSpec("greeter", Greeter, args=("hello",)),
            SupervisorSpec("pool", strategy="simple_one_for_one", children=[ChildSpec("worker", Greeter, args=("hi",))]),
        ],
    )


def run_demo(console: Console, base: str = "multiprocTCPBase") -> int:
    started = time.monotonic()
    with Runtime(base=base, log_level="CRITICAL") as rt:
        rt.start(demo_spec())
        for _ in range(2):
            rt.start_child("pool")
        console.print(rt.ask("greeter", "world"))
        console.print(rt.tree())
        console.print("[bold]crashing greeter[/] (an unexpected exception in its handler) ...")
        try:
            rt.ask("greeter", "crash")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            console.print(f"  the caller got [red]{type(exc).__name__}[/]: {exc}")
        console.print("[bold]killing pool worker-1[/] with SIGKILL ...")
        rt.kill("worker-1")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tree = rt.tree()
            if tree["greeter"].restarts and tree["worker-1"].restarts and tree["worker-1"].status == "running":
                break
            time.sleep(0.05)
        console.print(rt.ask("greeter", "world"))
        console.print(rt.tree())
    console.print(f"done in {time.monotonic() - started:.1f} s; no actor process left behind")
    return 0
