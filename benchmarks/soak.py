"""Soak: does anything grow with restarts, threads, keys or runtimes? Not a timed test.

Four phases, each sampled at its start, middle and end: memory (RSS of the caller and of every
process of the actor system, also per actor), open file descriptors (the same), per-operation
latency (median of the last operations), the monitor's table sizes and thespian's (in the
supervisor's process: the child slots it keeps, `supervision.hygiene`); then the slope per
1,000 operations.

1. restarts: a caller actor that asks a callee by name, crashed and restarted N times (a
   request that meets the caller between incarnations gets a typed error, `NoSuchName` or
   `DeadLetter`: it is retried, for at most RETRY_WINDOW seconds, and the retries are counted);
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
from supervision import ActorCrashed, Answer, Backoff, ChildSpec, DeadLetter, NoSuchName, Runtime, Server, SupervisorSpec
from supervision.liveness import group_members
from supervision.messages import MonitorStats, ThespianStats

FULL = {"restarts": 10_000, "threads": 1_000, "keys": 100_000, "runtimes": 1_000}
#: the actors whose RSS is shown one by one (the rest of the system: admin, logger, kernel)
ACTORS = ("soak", "callee", "caller", "limiter", "sys.monitor")
#: thespian's tables shown per phase (from the supervisor's process; all of them are in the JSON)
THESPIAN_SHOWN = ("managed", "local_addresses", "child_procs", "wakeups", "open_sockets")
#: how long a restart step retries a typed error (NoSuchName, DeadLetter) before it fails. A
#: restart can stall while the supervisor sits in thespian's select with its restart timer
#: overdue (4 in 10,000 restarts here, docs/NOTES.md): without a message to it (see NUDGE_AFTER)
#: it slept for more than 120 s.
RETRY_WINDOW = 120.0
#: after this long of typed errors, a restart step also asks the supervisor for its tables once a
#: second (a "nudge"): that message wakes a supervisor thespian left asleep with its restart timer
#: overdue; the nudges are counted (0 when nothing is wrong)
NUDGE_AFTER = 1.0
#: typed errors met while the caller is between incarnations
RETRIED = (NoSuchName, DeadLetter)


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


def _actor_pids(rt: Runtime) -> dict[str, int]:
    tree = rt.tree()
    found = {}
    for name in ACTORS:
        node = tree.find(name)
        if node is not None and node.pid:
            found[name] = node.pid
    return found


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
        pids = _actor_pids(rt)
        rss = {name: _rss_kib(pid) for name, pid in pids.items()}
        rss["others"] = point["system_rss_kib"] - sum(rss.values())
        point["rss_kib_by_actor"] = rss
        point["thespian"] = {name: rt.ask(name, ThespianStats(), timeout=10) for name in pids}
    return point


def _brief(point: dict[str, Any]) -> dict[str, Any]:
    """The line printed for a sample (everything is in the JSON)."""
    shown = {k: v for k, v in point.items() if k not in ("monitor", "thespian", "rss_kib_by_actor")}
    if "rss_kib_by_actor" in point:
        shown["rss_kib_by_actor"] = point["rss_kib_by_actor"]
    supervisor = point.get("thespian", {}).get("soak")
    if supervisor is not None:
        shown["thespian_soak"] = {k: supervisor.get(k) for k in THESPIAN_SHOWN}
        shown["open_sockets_all"] = sum(t.get("open_sockets") or 0 for t in point["thespian"].values())
    if "monitor" in point:
        shown["monitor_watches"] = point["monitor"].get("watches")
    return shown


def phase(name: str, total: int, step: Callable[[int], None], rt_of: Callable[[], Runtime | None]) -> dict[str, Any]:
    """Run `step(i)` `total` times; sample at the start, the middle and the end."""
    latencies: list[float] = []
    points = [sample(0, latencies, rt_of())]
    print(f"  {name}: 0/{total} {json.dumps(_brief(points[-1]))}", flush=True)
    started = time.monotonic()
    for i in range(total):
        began = time.perf_counter()
        step(i)
        latencies.append(time.perf_counter() - began)
        if i + 1 in (total // 2, total):
            points.append(sample(i + 1, latencies, rt_of()))
            print(f"  {name}: {i + 1}/{total} {json.dumps(_brief(points[-1]))}", flush=True)
    first, last = points[1] if len(points) > 2 else points[0], points[-1]
    span = max(1, last["ops"] - first["ops"])
    # slopes from the middle to the end (the first half includes warm-up: caches, imports)
    slope = {
        key: round((last[key] - first[key]) * 1000 / span, 3)
        for key in ("caller_rss_kib", "caller_fds", "system_rss_kib", "system_fds", "threads", "zombies")
    }
    if first["latency_ms"] is not None and last["latency_ms"] is not None:
        slope["latency_ms"] = round((last["latency_ms"] - first["latency_ms"]) * 1000 / span, 4)
    for actor, rss in last.get("rss_kib_by_actor", {}).items():
        if actor in first.get("rss_kib_by_actor", {}):
            slope[f"rss_kib.{actor}"] = round((rss - first["rss_kib_by_actor"][actor]) * 1000 / span, 3)
    for actor, tables in last.get("thespian", {}).items():
        if actor in first.get("thespian", {}):
            for table in ("managed", "child_procs", "dead_addresses", "open_sockets"):
                if tables.get(table) is not None and first["thespian"][actor].get(table) is not None:
                    slope[f"thespian.{actor}.{table}"] = round((tables[table] - first["thespian"][actor][table]) * 1000 / span, 3)
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

        retries: dict[str, Any] = {"crash": 0, "ask": 0, "by_type": {}, "waits_over_1s": [], "longest_wait_s": 0.0, "nudges": 0, "nudged_at_s": []}
        nudged = [0.0]

        def retrying(kind: str, call: Callable[[], Any]) -> Any:
            """`call()`, retried on a typed error of a restart in progress, for at most RETRY_WINDOW s."""
            began = time.monotonic()
            deadline = began + RETRY_WINDOW
            while True:
                try:
                    result = call()
                    waited = time.monotonic() - began
                    retries["longest_wait_s"] = max(retries["longest_wait_s"], round(waited, 3))
                    if waited > 1.0:
                        retries["waits_over_1s"].append(round(waited, 1))
                    return result
                except RETRIED as exc:
                    now = time.monotonic()
                    if now >= deadline:
                        raise
                    retries[kind] += 1
                    retries["by_type"][type(exc).__name__] = retries["by_type"].get(type(exc).__name__, 0) + 1
                    if now - began > NUDGE_AFTER and now - nudged[0] > NUDGE_AFTER:
                        # a supervisor asleep in thespian's select with its restart timer
                        # overdue (docs/NOTES.md) wakes on any message: send it one, and count
                        nudged[0] = now
                        retries["nudges"] += 1
                        retries["nudged_at_s"].append(round(now - began, 1))
                        rt.ask("soak", ThespianStats(), timeout=10)
                    time.sleep(0.005)

        def crash() -> None:
            try:
                rt.ask("caller", "crash", timeout=10)
            except ActorCrashed:
                pass

        def restart(i: int) -> None:
            retrying("crash", crash)
            # the new incarnation looks the callee up
            assert retrying("ask", lambda: rt.ask("caller", i, timeout=10)) == i

        results.append(phase("restarts", sizes["restarts"], restart, lambda: rt))
        results[-1]["retries"] = retries
        print(f"  restarts: retried {retries}", flush=True)

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
        per_actor = {k: v for k, v in s.items() if k.startswith(("rss_kib.", "thespian.soak."))}
        if per_actor:
            print(f"{'':<10} {'':>7} {'':>6}  {json.dumps(per_actor)}")
        if "retries" in result:
            print(f"{'':<10} {'':>7} {'':>6}  retries {json.dumps(result['retries'])}")
    from benchmarks.common import RESULTS

    path = args.json or str(RESULTS / "soak.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"sizes": sizes, "base": args.base, "results": results}, handle, indent=2, default=str)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
