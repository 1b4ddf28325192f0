"""The `thespian-otp` command: demo, database, live tree, jobs and projections.

Every error a user can cause (a bad DSN, an unreachable server, a port in use, a system that is
not running) prints one line and exits non-zero; no traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, Callable

from rich.console import Console

from supervision.errors import SupervisionError

EXIT_USAGE = 2
EXIT_ERROR = 1


def _database_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """`default=argparse.SUPPRESS` on a subcommand: an option given before it is kept."""
    parser.add_argument("--dsn", default=default, help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    parser.add_argument("--schema", default=default, help="schema to use (default: $THESPIAN_OTP_SCHEMA or thespian_otp)")
    parser.add_argument("--data-dir", default=default, help="data directory of the embedded server (default: your user data dir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thespian-otp", description="OTP-style supervision for thespian actors.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the whole tree on the embedded database, with faults")
    _database_options(demo)
    demo.add_argument("--jobs", type=int, default=3000, help="how many jobs to enqueue (default 3000)")
    demo.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    demo.add_argument("--base", default="multiprocTCPBase", choices=["multiprocTCPBase", "multiprocQueueBase"])
    demo.add_argument("--name", default="demo", help="runtime name other processes attach to (default demo)")
    demo.add_argument("--hold", type=float, default=0.0, help="keep the system running this many seconds at the end")
    demo.add_argument("--admin-port", type=int, help="thespian's admin port on loopback (default: a free one)")
    demo.set_defaults(run=_run_demo, schema_default="thespian_otp_demo")

    tree = commands.add_parser("tree", help="the supervision tree of a running runtime")
    tree.add_argument("--name", help="which runtime (default: the only one running)")
    tree.add_argument("--watch", action="store_true", help="refresh until interrupted")
    tree.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes with --watch")
    tree.set_defaults(run=_run_tree)

    status = commands.add_parser("status", help="a one-screen summary of a running runtime")
    status.add_argument("--name", help="which runtime (default: the only one running)")
    status.set_defaults(run=_run_status)

    db = commands.add_parser("db", help="database schema: init, status")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = db_commands.add_parser("init", help="create the schema and apply pending migrations")
    _database_options(init)
    init.set_defaults(run=_run_db_init)
    status = db_commands.add_parser("status", help="applied migrations and table row counts")
    _database_options(status)
    status.set_defaults(run=_run_db_status)

    jobs = commands.add_parser("jobs", help="queue depth, jobs by state, retry, cancel, pause, prune, wait")
    _database_options(jobs)
    jobs.add_argument("--limit", type=int, default=10, help="how many running jobs to list (default 10)")
    jobs.set_defaults(run=_run_jobs)
    from actors.cli_jobs import add_job_commands

    add_job_commands(jobs, _database_options)

    projections = commands.add_parser("projections", help="projection status and rebuilds")
    projection_commands = projections.add_subparsers(dest="projection_command", metavar="ACTION", required=True)
    pstatus = projection_commands.add_parser("status", help="each projection's checkpoint, lag and holder")
    _database_options(pstatus)
    pstatus.add_argument("names", nargs="*", help="projection names or import paths (default: the built-in ones)")
    pstatus.set_defaults(run=_run_projections_status)
    prebuild = projection_commands.add_parser("rebuild", help="replay every event into a fresh read model")
    _database_options(prebuild)
    prebuild.add_argument("name", help="a built-in projection name (job_stats) or an import path module:Class")
    prebuild.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running projector to let go")
    prebuild.set_defaults(run=_run_projections_rebuild)

    bench = commands.add_parser("bench", help="run every benchmark and write benchmarks/results/report.md")
    bench.add_argument("--quick", action="store_true", help="fewer iterations")
    bench.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    bench.set_defaults(run=_run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its one-line usage error
        return int(exc.code or 0)
    console = Console()
    # a plain `kill` stops the program like Ctrl-C: the runtime shuts its actors down in order
    signal.signal(signal.SIGTERM, _terminate)
    run: Callable[[argparse.Namespace, Console], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return run(args, console)
    except SupervisionError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _run_bench(args: argparse.Namespace, console: Console) -> int:
    try:
        from benchmarks.__main__ import main as bench_main
    except ImportError:
        raise _usage("the benchmarks ship with the source tree: run this from a clone (python -m benchmarks)") from None
    return bench_main((["--quick"] if args.quick else []) + (["--dsn", args.dsn] if args.dsn else []))


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run_demo(args: argparse.Namespace, console: Console) -> int:
    from actors.demo import run_demo

    if args.jobs < 1 or args.workers < 1:
        raise _usage("--jobs and --workers must be at least 1")
    if args.hold < 0:
        raise _usage("--hold must be >= 0 seconds")
    with _open(args, migrate=False) as handle:
        return run_demo(
            console, handle, jobs=args.jobs, workers=args.workers, base=args.base, hold=args.hold, name=args.name,
            admin_port=args.admin_port,
        )  # fmt: skip


def _run_tree(args: argparse.Namespace, console: Console) -> int:
    from supervision import Runtime

    if args.interval <= 0:
        raise _usage("--interval must be > 0 seconds")
    rt = Runtime.attach(args.name)
    try:
        if not args.watch:
            console.print(rt.tree().render(show_system=True))
            return 0
        from rich.live import Live

        with Live(rt.tree().render(), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(args.interval)
                live.update(rt.tree().render())
    finally:
        rt.stop()


def _run_status(args: argparse.Namespace, console: Console) -> int:
    from supervision import Runtime

    rt = Runtime.attach(args.name)
    try:
        tree = rt.tree()
    finally:
        rt.stop()
    nodes = list(tree.walk())
    running = sum(1 for n in nodes if n.status == "running")
    restarts = sum(n.restarts for n in nodes)
    crashes = sum(n.counters.crashes for n in nodes)
    dead = sum(n.counters.dead_letters for n in nodes)
    errors = sum(n.counters.recoverable_errors for n in nodes)
    console.print(f"runtime [cyan]{rt.name}[/] ({tree.base}, admin port {rt.admin_port})")
    console.print(f"  actors: {len(nodes)} ({running} running), restarts: {restarts}, crashes: {crashes}")
    console.print(f"  dead letters: {dead}, recoverable errors replied: {errors}")
    for node in tree.user_nodes:
        console.print(f"  tree {node.name}: {node.status}, {sum(1 for _ in node.walk())} actors")
    return 0


def _open(args: argparse.Namespace, migrate: bool) -> Any:
    from actors.stores.config import validate_schema
    from actors.stores.setup import resolve_database

    schema = args.schema if args.schema is not None else getattr(args, "schema_default", None)
    if schema is not None:
        validate_schema(schema)
    return resolve_database(args.dsn, schema, data_dir=args.data_dir, migrate=migrate)


def _run_db_init(args: argparse.Namespace, console: Console) -> int:
    from actors.stores.migrate import Migrator

    with _open(args, migrate=False) as handle, handle.database() as database:
        applied = Migrator(database).apply()
        console.print(f"database: {handle.source}, schema {handle.config.schema}")
        if applied:
            for migration in applied:
                console.print(f"  applied {migration.version:04d}_{migration.name}")
        else:
            console.print("  already up to date")
    return 0


def _run_db_status(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from actors.stores.migrate import Migrator

    with _open(args, migrate=False) as handle, handle.database() as database:
        status = Migrator(database).status()
    console.print(f"database: {handle.source}, schema {status.schema}")
    table = Table("migration", "applied at", title="migrations")
    for migration in status.applied:
        table.add_row(f"{migration.version:04d}_{migration.name}", str(migration.applied_at)[:19])
    for migration in status.pending:
        table.add_row(f"{migration.version:04d}_{migration.name}", "[yellow]pending[/]")
    console.print(table)
    counts = Table("table", "rows", title="tables")
    for name, count in status.row_counts.items():
        counts.add_row(name, "-" if count is None else f"{count:,}")
    console.print(counts)
    if status.version > status.known:
        console.print(f"[red]the schema is newer ({status.version}) than this code ({status.known})[/]")
        return EXIT_ERROR
    if status.pending:
        console.print("run `thespian-otp db init` to apply the pending migrations")
    return 0


def _run_jobs(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from actors.stores.jobs import PgJobStore
    from actors.stores.migrate import Migrator
    from actors.stores.processes import PgProcessStore

    if args.limit < 1:
        raise _usage("--limit must be at least 1")
    with _open(args, migrate=False) as handle, handle.database() as database:
        Migrator(database).require_current()
        store = PgJobStore(database)
        counts = store.counts()
        running = store.longest_running(args.limit)
        processes = PgProcessStore(database).all()
        from actors.stores.job_ops import PgJobOps

        paused = [row["queue"] for row in PgJobOps(database).paused()]
    console.print(f"database: {handle.source}, schema {handle.config.schema}")
    if paused:
        console.print(f"paused queues (thespian-otp jobs resume QUEUE): {', '.join(paused)}", highlight=False)
    states = ("available", "running", "completed", "failed", "cancelled")
    depth = Table("queue", *states, title="jobs by state")
    for queue in sorted({q for q, _ in counts}) or ["default"]:
        depth.add_row(queue, *(f"{counts.get((queue, state), 0):,}" for state in states))
    console.print(depth)
    longest = Table("job", "queue", "kind", "attempt", "process", "running for", title=f"longest-running jobs (top {args.limit})")
    for row in running:
        longest.add_row(str(row["id"]), row["queue"], row["kind"], str(row["attempt"]), str(row["claimed_by"]), f"{row['running_s']:.1f} s")
    console.print(longest if running else "no job is running")
    workers = Table("process", "node", "host", "pid", "last heartbeat", "expires", title="worker processes")
    for proc in processes:
        workers.add_row(str(proc.id), proc.node, proc.host, str(proc.pid), str(proc.heartbeat_at)[11:19], str(proc.expires_at)[11:19])
    console.print(workers if processes else "no worker process is registered")
    return 0


def _usage(message: str) -> SupervisionError:
    from supervision.errors import ConfigError

    return ConfigError(message)


def _run_projections_status(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from actors.projector import BUILTIN, status
    from actors.stores.migrate import Migrator

    with _open(args, migrate=False) as handle, handle.database() as database:
        Migrator(database).require_current()
        rows = status(database, args.names or list(BUILTIN))
    console.print(f"database: {handle.source}, schema {handle.config.schema}")
    table = Table("projection", "position", "lag (events)", "applied by", "last write", title="projections")
    for row in rows:
        table.add_row(
            row.name,
            f"{row.position:,}",
            f"{row.lag:,}",
            row.holder or "[yellow]nobody[/]",
            f"{row.last_writer or '-'} {str(row.updated_at or '')[:19]}",
        )
    console.print(table)
    return 0


def _run_projections_rebuild(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from actors.projector import load_projection, rebuild
    from actors.stores.migrate import Migrator

    projection = load_projection(args.name)
    with _open(args, migrate=False) as handle, handle.database() as database:
        Migrator(database).require_current()
        with Progress(TextColumn("rebuilding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(projection.name, total=None)
            applied = rebuild(database, projection, wait=args.wait, progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{projection.name}: replayed {applied:,} events into a fresh read model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
