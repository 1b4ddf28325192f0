"""How the cost of supervision grows: 10, 100 and 1,000 supervised children (start time, stop
time, memory per actor process), and jobs/s with 1, 2 and 4 worker processes (from the jobs
benchmark).

Usage: python -m benchmarks.scaling [--sizes 10 100 1000]
"""

from __future__ import annotations

import argparse
import time

import psutil

from benchmarks.actors import Echo
from benchmarks.common import Report
from supervision import ChildSpec, Runtime, SupervisorSpec


def memory_per_actor(pids: list[int]) -> tuple[float, float]:
    """(PSS, USS) in MiB per process: what each actor costs, shared pages split fairly / its own."""
    pss = uss = 0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        pss += info.pss
        uss += info.uss
    return pss / len(pids) / 2**20, uss / len(pids) / 2**20


def measure(size: int) -> dict[str, float]:
    spec = SupervisorSpec("scale", intensity=size, start_timeout=1200, children=[ChildSpec(f"c{i}", Echo) for i in range(size)])
    with Runtime("multiprocTCPBase", log_level="CRITICAL") as rt:
        started = time.perf_counter()
        rt.start(spec, timeout=1200)
        start_s = time.perf_counter() - started
        tree = rt.tree()
        pids = [node.pid for node in tree.walk() if node.name.startswith("c") and node.pid]
        assert len(pids) == size, (len(pids), size)
        assert rt.ask(f"c{size - 1}", "hi") == "hi"
        pss, uss = memory_per_actor(pids)
        started = time.perf_counter()
        rt.stop_tree("scale")
        stop_s = time.perf_counter() - started
    return {"start_s": start_s, "stop_s": stop_s, "pss_mib": pss, "uss_mib": uss}


def run(sizes: list[int]) -> Report:
    report = Report("scaling: supervised children")
    for size in sizes:
        result = measure(size)
        report.add(f"start {size:,} children (in order, each registered)", result["start_s"] * 1000, None, "ms", higher_is_better=False)
        report.add(f"stop {size:,} children (reverse order)", result["stop_s"] * 1000, None, "ms", higher_is_better=False)
        report.add(f"memory per actor process, {size:,} children (PSS)", result["pss_mib"], None, "MiB", higher_is_better=False)
        report.add(f"memory per actor process, {size:,} children (USS)", result["uss_mib"], None, "MiB", higher_is_better=False)
    report.notes.append("each child is its own OS process (multiprocTCPBase); PSS shares pages fairly, USS is what the process alone holds")
    return report


def main(argv: list[str] | None = None) -> list[Report]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args(argv)
    report = run(args.sizes)
    report.emit("scaling")
    return [report]


if __name__ == "__main__":
    main()
