"""Messaging cost of the runtime vs raw thespian, measured side by side on the same base.

- ask round trips/s by name through the runtime vs raw `ActorSystem.ask` to the same actor;
- tells/s from outside by name vs raw `ActorSystem.tell` (then one ask to confirm all arrived);
- restart latency after SIGKILL (kill -> the name answers again) vs creating a fresh actor
  and getting its first reply;
- dead-letter reply latency (a request to a dead actor comes back as `DeadLetter`) vs a normal ask;
- tells between actors by name (router cache) vs to raw addresses.

Usage: python -m benchmarks.messaging [--base multiprocTCPBase] [--quick]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
from typing import Any

from benchmarks.actors import Blast, Counter, Driver, Echo
from benchmarks.common import Report, rate
from supervision import Backoff, ChildSpec, DeadLetter, NoSuchName, Runtime, SupervisorSpec


def tree() -> SupervisorSpec:
    return SupervisorSpec(
        "bench",
        intensity=1000,
        period=1.0,
        backoff=Backoff(min=0.0, max=0.0, jitter=0.0),  # measure the mechanism, not the delay policy
        children=[
            ChildSpec("echo", Echo),
            ChildSpec("counter", Counter),
            ChildSpec("raw-counter", Counter),
            ChildSpec("driver", Driver),
            ChildSpec("victim", Echo),
            SupervisorSpec("temps", strategy="simple_one_for_one", children=[ChildSpec("temp", Echo, restart="temporary")]),
        ],
    )


def measure_asks(rt: Runtime, n: int, rounds: int) -> tuple[float, float]:
    raw = rt._system
    address = rt.whereis("echo").address
    ours_rates, raw_rates = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(n):
            assert raw.ask(address, i, 5) == i
        raw_rates.append(rate(n, time.perf_counter() - started))
        started = time.perf_counter()
        for i in range(n):
            assert rt.ask("echo", i) == i
        ours_rates.append(rate(n, time.perf_counter() - started))
    return statistics.median(ours_rates), statistics.median(raw_rates)


def measure_tells(rt: Runtime, n: int, rounds: int) -> tuple[float, float]:
    raw = rt._system
    address = rt.whereis("raw-counter").address
    ours_rates, raw_rates = [], []
    for _ in range(rounds):
        before = raw.ask(address, "count", 10)
        started = time.perf_counter()
        for _ in range(n):
            raw.tell(address, "x")
        assert raw.ask(address, "count", 60) == before + n
        raw_rates.append(rate(n, time.perf_counter() - started))
        before = rt.ask("counter", "count")
        started = time.perf_counter()
        for _ in range(n):
            rt.tell("counter", "x")
        assert rt.ask("counter", "count", timeout=60) == before + n
        ours_rates.append(rate(n, time.perf_counter() - started))
    return statistics.median(ours_rates), statistics.median(raw_rates)


def measure_restart(rt: Runtime, kills: int) -> tuple[float, float]:
    raw = rt._system
    restarts, spawns = [], []
    for _ in range(kills):
        started = time.perf_counter()
        fresh = raw.createActor(Echo)
        assert raw.ask(fresh, "hi", 10) == "hi"
        spawns.append(time.perf_counter() - started)
        raw.tell(fresh, __import__("thespian.actors").actors.ActorExitRequest())

        victim = rt.whereis("victim").identity  # looked up before the clock starts: kill -> answers
        started = time.perf_counter()
        victim.kill(signal.SIGKILL)
        while victim.is_alive():  # as rt.kill does: a request sent while the process is still
            time.sleep(0.0005)  # being reaped goes to the old address and waits for a dead letter
        while True:
            try:
                if rt.ask("victim", "hi", timeout=10) == "hi":
                    break
            except (DeadLetter, NoSuchName):
                continue
        restarts.append(time.perf_counter() - started)
    return statistics.median(restarts), statistics.median(spawns)


def measure_dead_letters(rt: Runtime, count: int) -> tuple[float, float, str]:
    """Asks by name to actors that died (killed after the runtime cached their address): the
    time until the typed error comes back, as a user's caller sees it."""
    names = [rt.start_child("temps") for _ in range(count)]
    entries = [rt.whereis(name) for name in names]
    for name in names:
        rt.kill(name)
    for entry in entries:
        while entry.identity.is_alive():
            time.sleep(0.001)
    samples, outcome = [], ""
    for name in names:
        # what users do: ask the name again (the runtime still caches the dead actor's entry)
        started = time.perf_counter()
        try:
            rt.ask(name, "hi", timeout=10)
        except (DeadLetter, NoSuchName) as exc:
            outcome = type(exc).__name__
        samples.append(time.perf_counter() - started)
    ask_samples = []
    for i in range(count):
        started = time.perf_counter()
        rt.ask("echo", i)
        ask_samples.append(time.perf_counter() - started)
    return statistics.median(samples), statistics.median(ask_samples), outcome


def measure_in_actor(rt: Runtime, n: int, rounds: int) -> tuple[float, float]:
    counter = rt.whereis("counter").address

    def blast(target: Any) -> float:
        before = rt.ask("counter", "count")
        started = time.perf_counter()
        message = Blast("counter", n) if target is None else Blast("counter", n, target)
        assert rt.ask("driver", message, timeout=300) == before + n
        return rate(n, time.perf_counter() - started)

    ours_rates, raw_rates = [], []
    for round_ in range(rounds):  # interleaved, each going first in turn
        if round_ % 2:
            ours_rates.append(blast(None))
            raw_rates.append(blast(counter))
        else:
            raw_rates.append(blast(counter))
            ours_rates.append(blast(None))
    return statistics.median(ours_rates), statistics.median(raw_rates)


def run(base: str, quick: bool = False) -> Report:
    n = 200 if quick else 1000
    rounds = 3
    report = Report(f"messaging ({base})")
    with Runtime(base, log_level="CRITICAL") as rt:
        rt.start(tree())
        rt.ask("echo", "warm up")
        ours, raw = measure_asks(rt, n, rounds)
        report.add("ask by name", ours, raw, "asks/s", "raw ActorSystem.ask", ">= 0.8x")
        ours, raw = measure_tells(rt, n, rounds)
        report.add("tell by name (from outside)", ours, raw, "tells/s", "raw ActorSystem.tell")
        restart, spawn = measure_restart(rt, 5 if quick else 15)
        report.add("restart after SIGKILL (kill -> answers)", restart * 1000, spawn * 1000, "ms", "create actor + first reply", "<= 2x", higher_is_better=False)
        dead, ask, outcome = measure_dead_letters(rt, 5 if quick else 20)
        report.add(f"request to a dead actor -> {outcome}", dead * 1000, ask * 1000, "ms", "normal ask", "<= 3x", higher_is_better=False)
        ours, raw = measure_in_actor(rt, n // 2, 5)
        report.add("tells between actors by name", ours, raw, "tells/s", "to raw addresses", ">= 0.9x")
    report.notes.append(f"{n} asks/tells per round, median of {rounds} interleaved rounds (5 for tells between actors)")
    return report


def main(argv: list[str] | None = None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", action="append", help="system base (repeatable); default: TCP and queue")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    reports = []
    for base in args.base or ["multiprocTCPBase", "multiprocQueueBase"]:
        report = run(base, args.quick)
        report.emit(f"messaging-{base}")
        reports.append(report)
    return reports


if __name__ == "__main__":
    main()
