"""Run every benchmark in one go and write one report: benchmarks/results/report.md and .json.

Usage: python -m benchmarks [--quick] [--only NAME ...] [--dsn URL] [--out DIR]
(also: thespian-otp bench). Each figure stands next to its baseline measured in the same run,
with the ratio. While it runs it says which benchmark is running and for how long; each
benchmark's table is shown (rendered, not as markdown) as soon as it is done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.markdown import Markdown

from benchmarks.common import RESULTS, Report, database_url, machine

#: benchmark name -> the steps it runs: (label, needs the database, run(quick, url, sizes))
STEPS: dict[str, list[tuple[str, bool, Callable[..., Report]]]] = {
    "messaging": [
        (f"messaging on {base}", False, lambda quick, url, sizes, base=base: _module("messaging").run(base, quick))
        for base in ("multiprocTCPBase", "multiprocQueueBase")
    ],
    # signed frames (as shipped) vs the unsigned transport of earlier versions, interleaved in one run
    "auth": [("authenticated transport", False, lambda quick, url, sizes: _module("auth").run(quick))],
    "limiter": [("limiter", True, lambda quick, url, sizes: _module("limiter").run("multiprocTCPBase", quick, url))],
    "jobs": [("jobs", True, lambda quick, url, sizes: _module("jobs").run(url, quick, history=100_000 if quick else 1_000_000))],
    "projector": [("projector", True, lambda quick, url, sizes: _module("projector").run(url, quick))],
    "scaling": [("scaling", False, lambda quick, url, sizes: _module("scaling").run(sizes or ([10, 100] if quick else [10, 100, 1000])))],
}


def _module(name: str):
    import importlib

    return importlib.import_module(f"benchmarks.{name}")


def run_all(
    quick: bool = False,
    dsn: str | None = None,
    sizes: list[int] | None = None,
    only: list[str] | None = None,
    console: Console | None = None,
) -> list[Report]:
    console = console or Console(stderr=True, quiet=True)
    steps = [step for name in (only or list(STEPS)) for step in STEPS[name]]
    reports: list[Report] = []
    needs_database = any(db for _, db, _ in steps)
    with (database_url(dsn) if needs_database else contextlib.nullcontext(None)) as url:
        for number, (label, _, run) in enumerate(steps, 1):
            started = time.monotonic()
            with console.status(f"[{number}/{len(steps)}] {label}: running", spinner="dots"):
                report = run(quick, url, sizes)
            reports.append(report)
            console.print(f"[green]✓[/] [{number}/{len(steps)}] {label}: done in {time.monotonic() - started:.0f} s")
            console.print(Markdown(report.markdown()))
    return reports


def write(reports: list[Report], out: Path = RESULTS) -> str:
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps({"when": when, "machine": info, "reports": [r.to_dict() for r in reports]}, indent=2))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations (minutes instead of ~10)")
    parser.add_argument("--only", action="append", choices=sorted(STEPS), metavar="NAME", help=f"run only these (repeatable): {', '.join(STEPS)}")
    parser.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"directory for report.md and report.json (default: {RESULTS})")
    args = parser.parse_args(argv)
    console = Console()
    console.print(f"running {', '.join(args.only or STEPS)}{' (quick)' if args.quick else ''}; the report goes to {args.out}")
    write(run_all(args.quick, args.dsn, only=args.only, console=console), args.out)
    console.print(f"wrote {args.out / 'report.md'} and {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
