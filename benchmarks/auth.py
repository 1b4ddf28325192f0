"""The cost of authenticating every TCP frame (supervision.auth) on the messaging figures.

Two runtimes run side by side in two worker processes: one as shipped (every frame signed with a
keyed BLAKE2b MAC and checked before unpickling), one with signing switched off in that worker only
(`auth.install` replaced by a no-op there: the unauthenticated transport of earlier versions).
The parent interleaves rounds between them, each going first in turn, and reports medians:
asks by name, raw `ActorSystem.ask`, and tells by name, plus the bare cost of signing and
checking one frame.

Usage: python -m benchmarks.auth [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import hmac
import json
import statistics
import subprocess
import sys
import time
import timeit
from typing import Any

from benchmarks.common import Report, rate


def worker(signed: bool) -> None:
    from benchmarks.actors import Counter, Echo
    from supervision import ChildSpec, Runtime, SupervisorSpec, auth

    if not signed:
        auth.install = lambda *args, **kwargs: None  # this worker only: the old, unsigned transport
    with Runtime("multiprocTCPBase", log_level="CRITICAL") as rt:
        rt.start(SupervisorSpec("bench", children=[ChildSpec("echo", Echo), ChildSpec("counter", Counter)]))
        raw, address = rt._system, rt.whereis("echo").address
        rt.ask("echo", "warm up")
        print("ready", flush=True)
        for line in sys.stdin:
            what, n = line.split()
            n = int(n)
            cpu = cpu_seconds(rt)
            started = time.perf_counter()
            if what == "asks":
                for i in range(n):
                    assert rt.ask("echo", i) == i
            elif what == "raw":
                for i in range(n):
                    assert raw.ask(address, i, 5) == i
            elif what == "tells":
                before = rt.ask("counter", "count")
                for _ in range(n):
                    rt.tell("counter", "x")
                assert rt.ask("counter", "count", timeout=60) == before + n
            elapsed = time.perf_counter() - started
            print(json.dumps([rate(n, elapsed), (cpu_seconds(rt) - cpu) / n * 1e6]), flush=True)


def cpu_seconds(rt: Any) -> float:
    """CPU time used so far by this process and every process of its actor system: under a
    loaded machine it moves far less than wall-clock rates do."""
    import psutil

    from supervision.liveness import group_members

    total = 0.0
    for pid in [os.getpid(), *group_members(rt._group)]:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class Worker:
    def __init__(self, signed: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.auth", "--worker", "signed" if signed else "unsigned"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout.readline().strip() == "ready"

    def measure(self, what: str, n: int) -> list[float]:
        self.process.stdin.write(f"{what} {n}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


def frame_cost() -> tuple[float, float]:
    """Microseconds to sign + check one small frame, and to pickle + unpickle it bare."""
    import pickle

    from supervision.auth import SignedPickle
    from supervision.messages import Envelope

    signer = SignedPickle()
    signer.keys[0] = signer.default = b"k" * 32
    signer.ring = (signer.default,)
    message = ("address placeholder", Envelope({"n": 1, "text": "x" * 100}, "echo", "x123-4"))
    number = 20000
    signed = timeit.timeit(lambda: signer.loads(signer.dumps(message)), number=number) / number * 1e6
    bare = timeit.timeit(lambda: pickle.loads(pickle.dumps(message)), number=number) / number * 1e6
    body = pickle.dumps(message)
    hmac_sha256 = timeit.timeit(lambda: hmac.digest(b"k" * 32, body, "sha256"), number=number) / number * 1e6
    blake2b = timeit.timeit(lambda: hashlib.blake2b(body, key=b"k" * 32, digest_size=32).digest(), number=number) / number * 1e6
    return signed, bare, blake2b, hmac_sha256


def run(quick: bool = False, rounds: int = 7) -> Report:
    n = 200 if quick else 1000
    report = Report("authenticated transport (multiprocTCPBase): signed vs unsigned, same run")
    signed, unsigned = Worker(True), Worker(False)
    results: dict[str, dict[str, list[float]]] = {what: {"signed": [], "unsigned": []} for what in ("asks", "raw", "tells")}
    cpu: dict[str, dict[str, list[float]]] = {what: {"signed": [], "unsigned": []} for what in results}
    try:
        for round_ in range(rounds):
            order = [("signed", signed), ("unsigned", unsigned)]
            if round_ % 2:
                order.reverse()
            for what in results:
                for label, worker_ in order:
                    throughput, cpu_us = worker_.measure(what, n)
                    results[what][label].append(throughput)
                    cpu[what][label].append(cpu_us)
    finally:
        signed.close()
        unsigned.close()
    names = {"asks": ("ask by name", "asks/s"), "raw": ("raw ActorSystem.ask", "asks/s"), "tells": ("tell by name (from outside)", "tells/s")}
    for what, (measure, unit) in names.items():
        goal = ">= 0.9x" if what == "asks" else ""
        report.add(measure, statistics.median(results[what]["signed"]), statistics.median(results[what]["unsigned"]), unit, "unsigned transport", goal)
        report.add(f"{measure}: CPU of every process", statistics.median(cpu[what]["signed"]), statistics.median(cpu[what]["unsigned"]), "us each", "unsigned transport", "<= 1.1x", higher_is_better=False)
    cost, bare, blake2b, hmac_sha256 = frame_cost()
    report.add("sign + check one frame", cost, bare, "us", "pickle + unpickle, bare", higher_is_better=False)
    report.add("keyed BLAKE2b of one frame (the MAC used)", blake2b, hmac_sha256, "us", "HMAC-SHA256", higher_is_better=False)
    for what, (measure, _) in names.items():
        pairs = [a / b for a, b in zip(results[what]["signed"], results[what]["unsigned"], strict=True)]
        report.notes.append(f"{measure}: median of the per-round ratios signed/unsigned {statistics.median(pairs):.2f}x (each pair measured back to back)")
    report.notes.append(f"CPU samples (us per operation): {json.dumps(cpu)}")
    report.notes.append(f"{n} per round, median of {rounds} interleaved rounds (each arm first in turn); raw samples: {json.dumps(results)}")
    return report


def main(argv: list[str] | None = None) -> Report | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", choices=["signed", "unsigned"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker == "signed")
        return None
    report = run(args.quick, args.rounds)
    report.emit("auth")
    return report


if __name__ == "__main__":
    main()
