"""Soak: does anything grow with restarts, threads, keys or runtimes? Not a timed test.

Four phases, each sampled at its start, middle and end: memory (RSS of the caller and of every
process of the actor system), open file descriptors (the same), per-operation latency (median
of the last operations), and the monitor's table sizes; then the slope per 1,000 operations.

1. restarts: a caller actor that asks a callee by name, crashed and restarted N times;
2. threads: N short-lived threads, each making one ask;
3. keys: N distinct limiter keys acquired and released (the default limit covers them);
4. runtimes: N starts and stops of a Runtime in this process (zombies counted too).

Usage: python -m benchmarks.soak [--quick] [--scale F] [--size PHASE=N ...] [--json PATH]
Full sizes: 10,000 / 1,000 / 100,000 / 1,000; --quick runs 1/20 of them; --scale multiplies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from typing import Any, Callable

from actors.limiter import Limit, Limiter, LimiterServer
from supervision import ActorCrashed, Answer, Backoff, ChildSpec, Runtime, Server, SupervisorSpec
from supervision.liveness import group_members
from supervision.messages import MonitorStats

FULL = {"restarts": 10_000, "threads": 1_000, "keys": 100_000, "runtimes": 1_000}


class Callee(Server):
    def handle(self, message: Any) -> Any:
        return message


class Caller(Server):
    """Asks the callee by name (a lookup and a watch per incarnation); crashes on request."""

    def handle(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("asked to crash")
        if isinstance(message, Answer):
            return None
        self.ask("callee", message, reply_to=self.defer())
        return None


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _zombies() -> int:
    me, count = os.getpid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += fields[0] == "Z" and int(fields[1]) == me
    return count


def sample(done: int, latencies: list[float], rt: Runtime | None) -> dict[str, Any]:
    members = group_members(rt._group) if rt is not None and rt._group else []
    point: dict[str, Any] = {
        "ops": done,
        "caller_rss_kib": _rss_kib(os.getpid()),
        "caller_fds": _fds(os.getpid()),
        "system_rss_kib": sum(_rss_kib(p) for p in members),
        "system_fds": sum(_fds(p) for p in members),
        "system_processes": len(members),
        "threads": threading.active_count(),
        "zombies": _zombies(),
        "latency_ms": round(statistics.median(latencies[-200:]) * 1000, 3) if latencies else None,
    }
    if rt is not None and rt.running:
        point["monitor"] = rt.ask("sys.monitor", MonitorStats(), timeout=10)
    return point


def phase(name: str, total: int, step: Callable[[int], None], rt_of: Callable[[], Runtime | None]) -> dict[str, Any]:
    """Run `step(i)` `total` times; sample at the start, the middle and the end."""
    latencies: list[float] = []
    points = [sample(0, latencies, rt_of())]
    started = time.monotonic()
    for i in range(total):
        began = time.perf_counter()
        step(i)
        latencies.append(time.perf_counter() - began)
        if i + 1 in (total // 2, total):
            points.append(sample(i + 1, latencies, rt_of()))
            print(f"  {name}: {i + 1}/{total} {json.dumps({k: v for k, v in points[-1].items() if k != 'monitor'})}", flush=True)
    first, last = points[1] if len(points) > 2 else points[0], points[-1]
    span = max(1, last["ops"] - first["ops"])
    # slopes from the middle to the end (the first half includes warm-up: caches, imports)
    slope = {
        key: round((last[key] - first[key]) * 1000 / span, 3)
        for key in ("caller_rss_kib", "caller_fds", "system_rss_kib", "system_fds", "threads", "zombies")
    }
    if first["latency_ms"] is not None and last["latency_ms"] is not None:
        slope["latency_ms"] = round((last["latency_ms"] - first["latency_ms"]) * 1000 / span, 4)
    return {"phase": name, "operations": total, "seconds": round(time.monotonic() - started, 1), "points": points, "slope_per_1000": slope}


def run(sizes: dict[str, int], base: str = "multiprocTCPBase") -> list[dict[str, Any]]:
    results = []
    spec = SupervisorSpec(
        "soak",
        intensity=10**9,
        period=1.0,
        backoff=Backoff(min=0.001, max=0.001, jitter=0.0),  # measure restarts, not the backoff
        children=[
            ChildSpec("callee", Callee),
            ChildSpec("caller", Caller),
            ChildSpec("limiter", LimiterServer, kwargs={"limits": {"db": Limit(4)}, "default": Limit(4)}),
        ],
    )
    with Runtime(base, log_level="CRITICAL") as rt:
        rt.start(spec)

        def restart(i: int) -> None:
            try:
                rt.ask("caller", "crash", timeout=10)
            except ActorCrashed:
                pass
            assert rt.ask("caller", i, timeout=10) == i  # the new incarnation looks the callee up

        results.append(phase("restarts", sizes["restarts"], restart, lambda: rt))

        def one_thread(i: int) -> None:
            out: list = []
            thread = threading.Thread(target=lambda: out.append(rt.ask("callee", i, timeout=10)))
            thread.start()
            thread.join()
            assert out == [i]

        results.append(phase("threads", sizes["threads"], one_thread, lambda: rt))
        limiter = Limiter(rt)

        def one_key(i: int) -> None:
            limiter.release(limiter.acquire(f"key-{i}", timeout=10))

        results.append(phase("keys", sizes["keys"], one_key, lambda: rt))
        results[-1]["limiter_keys_at_end"] = len(limiter.stats())

    def start_stop(i: int) -> None:
        with Runtime(base, log_level="CRITICAL") as other:
            other.start(SupervisorSpec("tiny", children=[ChildSpec("callee", Callee)]))
            assert other.ask("callee", i, timeout=10) == i

    results.append(phase("runtimes", sizes["runtimes"], start_stop, lambda: None))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/20 of the full sizes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the sizes (after --quick)")
    parser.add_argument("--size", action="append", default=[], metavar="PHASE=N", help="set one phase's size, e.g. keys=20000")
    parser.add_argument("--base", default="multiprocTCPBase")
    parser.add_argument("--json", default=None, help="where to write the results (default benchmarks/results/soak.json)")
    args = parser.parse_args()
    factor = (0.05 if args.quick else 1.0) * args.scale
    sizes = {name: max(10, int(count * factor)) for name, count in FULL.items()}
    for item in args.size:
        name, _, count = item.partition("=")
        if name not in FULL or not count.isdigit():
            parser.error(f"--size {item!r}: expected one of {', '.join(FULL)} = a number")
        sizes[name] = int(count)
    print(f"soak on {args.base}: {sizes}", flush=True)
    results = run(sizes, args.base)
    print(f"{'phase':<10} {'ops':>7} {'s':>6}  slope per 1,000 ops: caller RSS KiB / fds, system RSS KiB / fds, threads, zombies, latency ms")
    for result in results:
        s = result["slope_per_1000"]
        print(
            f"{result['phase']:<10} {result['operations']:>7} {result['seconds']:>6}  "
            f"{s['caller_rss_kib']:>8} / {s['caller_fds']:>6}, {s['system_rss_kib']:>8} / {s['system_fds']:>6}, "
            f"{s['threads']:>5}, {s['zombies']:>5}, {s.get('latency_ms', '-')}"
        )
    from benchmarks.common import RESULTS

    path = args.json or str(RESULTS / "soak.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"sizes": sizes, "base": args.base, "results": results}, handle, indent=2, default=str)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
