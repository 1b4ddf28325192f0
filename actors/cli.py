"""The `thespian-otp` command: demo, database, live tree, observer, jobs and projections.

Every error a user can cause (a bad DSN, an unreachable server, a port in use, a system that is
not running, a schema the demo did not create) prints one line and exits non-zero; no traceback.
To a terminal, lines and tables are fitted to its width without cutting a word (`actors.tables`);
to a pipe, an error stays on one line.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from typing import Any, Callable

from rich.console import Console

from actors.tables import table
from supervision.errors import SupervisionError

EXIT_USAGE = 2
EXIT_ERROR = 1
#: the schema `thespian-otp demo` writes to unless told otherwise
DEMO_SCHEMA = "thespian_otp_demo"
#: runtime names become file names (the discovery record): no path separators
RUNTIME_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,62}$")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _check_runtime_name(value: str | None) -> None:
    if value is not None and not RUNTIME_NAME.match(value):
        raise _usage(f"--name {value!r} is not a runtime name: use up to 63 letters, digits and _ . @ -, starting with a letter, digit or _")


def _database_options(parser: argparse.ArgumentParser, schema_default: str = "$THESPIAN_OTP_SCHEMA or thespian_otp", *, default: Any = None) -> None:
    """`default=argparse.SUPPRESS` on a subcommand: an option given before it is kept."""
    parser.add_argument("--dsn", default=default, help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    parser.add_argument("--schema", default=default, help=f"schema to use (default: {schema_default})")
    parser.add_argument("--data-dir", default=default, help="data directory of the embedded server (default: your user data dir)")


def build_parser() -> argparse.ArgumentParser:
    from supervision import __version__

    parser = argparse.ArgumentParser(prog="thespian-otp", description="OTP-style supervision for thespian actors.", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"thespian-otp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(where: Any, name: str, help: str) -> argparse.ArgumentParser:
        return where.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)

    demo = command(commands, "demo", "run the whole tree on the embedded database, with faults")
    _database_options(demo, f"{DEMO_SCHEMA}, which the demo creates, and drops on its next run")
    demo.add_argument("--jobs", type=int, default=3000, help="how many jobs to enqueue")
    demo.add_argument("--workers", type=int, default=4, help="worker processes")
    demo.add_argument(
        "--base", default="multiprocTCPBase", choices=["multiprocTCPBase", "multiprocQueueBase"], metavar="BASE",
        help="thespian system base, multiprocTCPBase or multiprocQueueBase: one process per actor, over TCP or queues",
    )  # fmt: skip
    demo.add_argument("--name", default="demo", help="runtime name other processes attach to")
    demo.add_argument("--hold", type=float, default=0.0, help="keep the system running this many seconds at the end")
    demo.add_argument("--admin-port", type=int, help="thespian's admin port on loopback (default: a free one)")
    demo.add_argument(
        "--projection-wait", type=float, default=20.0, metavar="SECONDS",
        help="how long to wait for the projection to catch up before showing its table",
    )  # fmt: skip
    demo.set_defaults(run=_run_demo, schema_default=DEMO_SCHEMA)

    tree = command(commands, "tree", "the supervision tree of a running runtime")
    tree.add_argument("--name", help="which runtime (default: the only one running)")
    tree.add_argument("--watch", action="store_true", help="refresh until interrupted")
    tree.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes with --watch")
    tree.set_defaults(run=_run_tree)

    status = command(commands, "status", "a one-screen summary of a running runtime")
    status.add_argument("--name", help="which runtime (default: the only one running)")
    status.set_defaults(run=_run_status)

    db = command(commands, "db", "database schema: init, status")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = command(db_commands, "init", "create the schema and apply pending migrations")
    _database_options(init)
    init.set_defaults(run=_run_db_init)
    status = command(db_commands, "status", "applied migrations and table row counts")
    _database_options(status)
    status.set_defaults(run=_run_db_status)

    jobs = command(commands, "jobs", "queue depth, jobs by state, retry, cancel, pause, prune, wait")
    _database_options(jobs)
    jobs.add_argument("--limit", type=int, default=10, help="how many running jobs to list")
    jobs.set_defaults(run=_run_jobs)
    from actors.cli_jobs import add_job_commands

    add_job_commands(jobs, _database_options)

    projections = command(commands, "projections", "projection status and rebuilds")
    projection_commands = projections.add_subparsers(dest="projection_command", metavar="ACTION", required=True)
    pstatus = command(projection_commands, "status", "each projection's checkpoint, lag and holder")
    _database_options(pstatus)
    pstatus.add_argument("names", nargs="*", help="projection names or import paths module:Class (default: the built-in ones)")
    pstatus.set_defaults(run=_run_projections_status)
    prebuild = command(projection_commands, "rebuild", "replay every event into a fresh read model")
    _database_options(prebuild)
    prebuild.add_argument("name", help="a built-in projection name (job_stats) or an import path module:Class")
    prebuild.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a running projector to let go")
    prebuild.set_defaults(run=_run_projections_rebuild)

    observer = command(commands, "observer", "the live system in a browser, and /metrics for Prometheus")
    observer.add_argument("--name", help="which runtime (default: the only one running)")
    observer.add_argument("--port", type=int, default=8765, help="port to listen on (0: a free one)")
    observer.add_argument("--host", default="127.0.0.1", help="address to listen on")
    observer.add_argument("--trusted-network", action="store_true", help="allow a --host other hosts can reach (0.0.0.0: every interface)")
    observer.add_argument(
        "--allowed-host", action="append", metavar="NAME",
        help="a name the page is reached by (a DNS name, a proxy's); repeat for more. The address it listens on is always answered",
    )  # fmt: skip
    observer.add_argument("--read-only", action="store_true", help="no retry/cancel buttons; refuse state changes")
    observer.add_argument("--no-database", action="store_true", help="show the tree only (no jobs, nodes, projections)")
    _database_options(observer)
    observer.set_defaults(run=_run_observer)


    bench = command(commands, "bench", "run the benchmarks (from a clone) and write one report")
    bench.add_argument("--quick", action="store_true", help="fewer iterations (minutes instead of ~10)")
    bench.add_argument(
        "--only", action="append", metavar="NAME", choices=["messaging", "limiter", "jobs", "projector", "scaling"],
        help="run only these benchmarks (repeatable): messaging, limiter, jobs, projector, scaling",
    )  # fmt: skip
    bench.add_argument("--dsn", help="PostgreSQL URL (default: $DATABASE_URL, else an embedded server)")
    bench.add_argument("--out", help="directory for report.md and report.json (default: benchmarks/results)")
    bench.set_defaults(run=_run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its usage error, or --help / --version
        return int(exc.code or 0)
    # the console script's sys.path holds its own bin directory, not where the user stands:
    # `projections status myapp.projections:X` must import myapp as `python -m` would (appended,
    # so a file in the current directory never shadows an installed module)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
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
        _print_error(_with_hint(str(exc), exc, args))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not type(exc).__module__.split(".")[0].startswith("psycopg"):  # psycopg, psycopg_pool
            raise
        # a database error no store turned into a typed one: still one line, not a traceback
        _print_error(f"PostgreSQL: {_first_line(exc)}")
        return EXIT_ERROR


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _print_error(message: str) -> None:
    # to a terminal: wrapped at word boundaries to its width; to a pipe or a file: one line
    from rich.markup import escape

    Console(stderr=True, soft_wrap=not sys.stderr.isatty()).print(f"[red]error:[/] {escape(message)}", highlight=False)


def _with_hint(message: str, exc: SupervisionError, args: argparse.Namespace) -> str:
    from actors.stores.errors import SchemaNotReady

    if isinstance(exc, SchemaNotReady) and exc.found == 0 and getattr(args, "schema", None) is None and args.command != "demo":
        message += f" (the demo keeps its data in schema {DEMO_SCHEMA}: add --schema {DEMO_SCHEMA} to see it)"
    return message


def _run_bench(args: argparse.Namespace, console: Console) -> int:
    bench_main = _benchmarks()
    argv = ["--quick"] if args.quick else []
    for name in args.only or []:
        argv += ["--only", name]
    argv += ["--dsn", args.dsn] if args.dsn else []
    argv += ["--out", args.out] if args.out else []
    return bench_main(argv)


def _benchmarks() -> Callable[[list[str]], int]:
    """`benchmarks` is not installed with the package: find it in the clone this code was
    installed from (an editable install), or in the current directory."""
    from pathlib import Path

    import actors

    for root in (Path(actors.__file__).resolve().parent.parent, Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            break
    else:
        raise _usage("the benchmarks ship with the source tree, not the package: run this from a clone (git clone, then pip install -e .)")
    from benchmarks.__main__ import main as bench_main

    return bench_main


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run_demo(args: argparse.Namespace, console: Console) -> int:
    from actors.demo import run_demo

    _check_runtime_name(args.name)
    if args.jobs < 1 or args.workers < 1:
        raise _usage("--jobs and --workers must be at least 1")
    if args.hold < 0 or args.projection_wait < 0:
        raise _usage("--hold and --projection-wait must be >= 0 seconds")
    with _open(args, migrate=False) as handle:
        return run_demo(
            console, handle, jobs=args.jobs, workers=args.workers, base=args.base, hold=args.hold, name=args.name,
            admin_port=args.admin_port, projection_wait=args.projection_wait,
        )  # fmt: skip


def _run_tree(args: argparse.Namespace, console: Console) -> int:
    from supervision import Runtime

    _check_runtime_name(args.name)
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

    _check_runtime_name(args.name)
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


def _run_observer(args: argparse.Namespace, console: Console) -> int:
    try:
        from actors.observer import serve
    except ImportError as exc:
        raise _usage(f"the observer needs its extra: pip install 'thespian-otp[observer]' ({exc})") from None
    from supervision import Runtime

    rt = Runtime.attach(args.name)
    handle = None
    try:
        if not args.no_database:
            if args.schema is None and rt.name == "demo":
                args.schema_default = "thespian_otp_demo"  # what `thespian-otp demo` uses
            handle = _open(args, migrate=False)
        config = handle.config if handle is not None else None
        observer = serve(
            rt, config, host=args.host, port=args.port, read_only=args.read_only, trusted_network=args.trusted_network,
            allowed_hosts=args.allowed_host or (),
        )  # fmt: skip
        try:
            where = f", database {handle.source}, schema {config.schema}" if handle is not None else ""
            console.print(f"observer of runtime [cyan]{rt.name}[/]{where}")
            console.print(f"  open [bold]{observer.url}[/] (metrics: {observer.url}metrics); Ctrl-C stops", highlight=False, soft_wrap=True)
            others = [url for url in observer.urls() if url != observer.url]
            if others:
                console.print(f"  from other machines: {' '.join(others)}", highlight=False, soft_wrap=True)
            console.print(f"  answers the Host names {', '.join(observer.hosts())}", highlight=False, soft_wrap=True)
            if not observer.actions_enabled:
                console.print(f"  retry/cancel are off: {observer.actions_note}", highlight=False)
            while True:
                time.sleep(1.0)
        finally:
            observer.stop()
    finally:
        if handle is not None:
            handle.close()
        rt.stop()


def _open(args: argparse.Namespace, migrate: bool) -> Any:
    from actors.stores.config import validate_schema
    from actors.stores.setup import resolve_database

    schema = args.schema if args.schema is not None else getattr(args, "schema_default", None)
    if schema is not None:
        validate_schema(schema)
    if args.data_dir is not None and os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        raise _usage(f"--data-dir {args.data_dir}: this is a file, not a directory; give a directory for the embedded server's data")
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
    from actors.stores.migrate import Migrator

    with _open(args, migrate=False) as handle, handle.database() as database:
        status = Migrator(database).status()
    console.print(f"database: {handle.source}, schema {status.schema}")
    migrations = table("migration", "applied at", title="migrations")
    for migration in status.applied:
        migrations.add_row(f"{migration.version:04d}_{migration.name}", str(migration.applied_at)[:19])
    for migration in status.pending:
        migrations.add_row(f"{migration.version:04d}_{migration.name}", "[yellow]pending[/]")
    console.print(migrations)
    counts = table("table", "rows", title="tables")
    for name, count in status.row_counts.items():
        counts.add_row(name, "-" if count is None else f"{count:,}")
    console.print(counts)
    if status.version > status.known:
        console.print(f"[red]the schema is newer ({status.version}) than this code ({status.known})[/]")
        return EXIT_ERROR
    if status.pending:
        console.print("run `thespian-otp db init` to apply the pending migrations")
    if status.version == 0 and args.schema is None:
        console.print(f"(the demo keeps its data in schema {DEMO_SCHEMA}: add --schema {DEMO_SCHEMA} to see it)")
    return 0


def _run_jobs(args: argparse.Namespace, console: Console) -> int:
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
    depth = table("queue", *states, title="jobs by state")
    for queue in sorted({q for q, _ in counts}) or ["default"]:
        depth.add_row(queue, *(f"{counts.get((queue, state), 0):,}" for state in states))
    console.print(depth)
    longest = table("job", "queue", "kind", "attempt", "process", "running for", title=f"longest-running jobs (top {args.limit})")
    for row in running:
        longest.add_row(str(row["id"]), row["queue"], row["kind"], str(row["attempt"]), str(row["claimed_by"]), f"{row['running_s']:.1f} s")
    console.print(longest if running else "no job is running")
    workers = table("process", "node", "worker", "host", "pid", "last heartbeat", "expires", title="worker processes")
    for proc in processes:
        node, _, worker = proc.node.rpartition(":")  # registered as "node:worker", or "worker" without a node
        workers.add_row(str(proc.id), node or "-", worker, proc.host, str(proc.pid), str(proc.heartbeat_at)[11:19], str(proc.expires_at)[11:19])
    console.print(workers if processes else "no worker process is registered")
    return 0


def _usage(message: str) -> SupervisionError:
    from supervision.errors import ConfigError

    return ConfigError(message)


def _run_projections_status(args: argparse.Namespace, console: Console) -> int:
    from actors.projector import BUILTIN, status
    from actors.stores.migrate import Migrator

    with _open(args, migrate=False) as handle, handle.database() as database:
        Migrator(database).require_current()
        rows = status(database, args.names or list(BUILTIN))
    console.print(f"database: {handle.source}, schema {handle.config.schema}")
    projections = table("projection", "position", "lag (events)", "applied by", "last write", title="projections")
    for row in rows:
        projections.add_row(
            row.name,
            f"{row.position:,}",
            f"{row.lag:,}",
            row.holder or "[yellow]nobody[/]",
            f"{row.last_writer or '-'} {str(row.updated_at or '')[:19]}",
        )
    console.print(projections)
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
