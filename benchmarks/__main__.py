"""Run every benchmark in one go and write one report: benchmarks/results/report.md and .json.

Usage: python -m benchmarks [--quick] [--dsn URL]     (also: thespian-otp bench)
Each figure stands next to its baseline measured in the same run, with the ratio.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks import jobs, limiter, messaging, projector, scaling
from benchmarks.common import RESULTS, Report, database_url, machine


def run_all(quick: bool = False, dsn: str | None = None, sizes: list[int] | None = None) -> list[Report]:
    reports: list[Report] = []
    reports += [messaging.run(base, quick) for base in ("multiprocTCPBase", "multiprocQueueBase")]
    with database_url(dsn) as url:
        reports.append(limiter.run("multiprocTCPBase", quick, url))
        reports.append(jobs.run(url, quick, history=100_000 if quick else 1_000_000))
        reports.append(projector.run(url, quick))
    reports.append(scaling.run(sizes or ([10, 100] if quick else [10, 100, 1000])))
    return reports


def write(reports: list[Report]) -> str:
    info = machine()
    when = time.strftime("%Y-%m-%d %H:%M")
    header = [
        f"## Benchmark report ({when})",
        "",
        f"Machine: {info['platform']}, {info['cpus']} CPUs, Python {info['python']}. "
        "Every ratio compares two figures measured in the same run on the same machine.",
        "",
    ]
    body = "\n\n".join(report.markdown() for report in reports)
    text = "\n".join(header) + body + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.md").write_text(text)
    (RESULTS / "report.json").write_text(json.dumps({"when": when, "machine": info, "reports": [r.to_dict() for r in reports]}, indent=2))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (minutes instead of ~10)")
    parser.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    args = parser.parse_args(argv)
    text = write(run_all(args.quick, args.dsn))
    print(text)
    print(f"(wrote {RESULTS / 'report.md'} and {RESULTS / 'report.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
