"""Exposure: nothing listens beyond loopback unless asked for; user input never becomes SQL."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import psutil
import pytest

from actors.jobs import BadJob, new_job
from actors.projector import UnknownProjection, load_projection
from actors.stores import DatabaseConfig
from supervision import ChildSpec, ConfigError, Runtime, SpecError, SupervisorSpec
from supervision.liveness import group_members
from tests.support import Echo

ROOT = Path(__file__).resolve().parent.parent


def test_by_default_every_socket_of_the_actor_system_listens_on_loopback_only(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    members = set(group_members(rt._group))
    listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in members]
    assert listening, "the actor system should listen somewhere"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
    assert rt.admin_port in {c.laddr.port for c in listening}


@pytest.mark.parametrize("listen", ["0.0.0.0", "10.1.2.3"])
def test_listening_beyond_loopback_needs_the_trusted_network_opt_in(listen):
    with pytest.raises(ConfigError, match="trusted_network=True"):
        Runtime("multiprocTCPBase", listen=listen)
    assert Runtime("multiprocTCPBase", listen=listen, trusted_network=True).listen == listen


def test_a_listen_address_that_is_not_an_ip_is_refused():
    with pytest.raises(ConfigError, match="not an IP address"):
        Runtime("multiprocTCPBase", listen="localhost; rm -rf /")


INJECTION = "x'; DROP TABLE jobs; --"


def test_identifiers_from_users_are_validated_before_they_reach_sql():
    with pytest.raises(SpecError):
        DatabaseConfig("postgresql:///x", schema=INJECTION)
    import tests.job_handlers  # noqa: F401

    with pytest.raises(BadJob):
        new_job("noop", {}, queue=INJECTION)
    with pytest.raises(BadJob):
        new_job(INJECTION, {}, check_kind=False)
    with pytest.raises(UnknownProjection):
        load_projection(INJECTION)
    with pytest.raises(SpecError):
        ChildSpec(INJECTION, Echo)


#: driver methods that take SQL text as their first argument
SQL_CALLS = {"execute", "executemany", "copy", "stream"}
#: statements that take no parameters; their f-strings may only interpolate a channel name
#: built from a validated schema (`jobs.channel`, `events_channel(schema)`)
CHANNEL_STATEMENTS = ("LISTEN ", "UNLISTEN ", "NOTIFY ")


def sql_built_from_strings(source: str, path: str = "<source>") -> list[str]:
    """Every call of a driver method (`execute`, `executemany`, `copy`, `stream`) whose SQL is
    built from strings: an f-string, `%` or `+` on strings, `.format` (psycopg's `sql.SQL(...)
    .format` composes identifiers safely and is allowed), or a local variable assigned one of
    those. An f-string may interpolate local names bound to string literals only (a fixed column
    list), or, for LISTEN/NOTIFY, a channel name. Checked on the syntax tree, so multi-line
    calls and `cursor.copy(f"...")` are seen (a line regex missed both)."""
    tree = ast.parse(source, path)
    offenders: list[str] = []

    def literal_names(scope: ast.AST) -> tuple[set[str], dict[str, list[ast.expr]]]:
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        constants = {n for n, values in assigned.items() if all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values)}
        return constants, assigned

    def built(node: ast.expr, constants: set[str], assigned: dict[str, list[ast.expr]], depth: int = 0) -> bool:
        if isinstance(node, ast.JoinedStr):
            head = node.values[0].value if node.values and isinstance(node.values[0], ast.Constant) else ""
            for part in node.values:
                if not isinstance(part, ast.FormattedValue):
                    continue
                value = part.value
                if isinstance(value, ast.Name) and value.id in constants:
                    continue
                if str(head).upper().startswith(CHANNEL_STATEMENTS) and "channel" in ast.unparse(value):
                    continue
                return True
            return False
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            inner = node.func.value
            return not (isinstance(inner, ast.Call) and ast.unparse(inner.func).endswith("SQL"))
        if isinstance(node, ast.Name) and depth < 3:
            return any(built(v, constants, assigned, depth + 1) for v in assigned.get(node.id, ()))
        return False

    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] or [tree]
    seen: set[int] = set()
    for scope in scopes:
        constants, assigned = literal_names(scope)
        for node in ast.walk(scope):
            if id(node) in seen or not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            seen.add(id(node))
            if node.func.attr in SQL_CALLS and node.args and built(node.args[0], constants, assigned):
                offenders.append(f"{path}:{node.lineno}: {ast.unparse(node)[:120]}")
    return offenders


def test_the_sql_check_sees_multi_line_calls_copy_and_queries_built_elsewhere():
    bad = textwrap.dedent(
        """
        def store(conn, cursor, table, value):
            conn.execute(
                f"SELECT * FROM {table}"
            )
            with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                pass
            conn.execute("SELECT %s" % value)
            conn.execute("SELECT " + value)
            conn.execute("SELECT {}".format(value))
            query = f"DELETE FROM {table}"
            conn.execute(query)
        """
    )
    assert len(sql_built_from_strings(bad)) == 6
    good = textwrap.dedent(
        """
        def store(conn, cursor, jobs, schema):
            columns = "queue, kind"
            conn.execute(Q["claim"], {"queue": "q"})
            conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(schema)))
            with cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
                pass
            conn.execute(f"LISTEN {jobs.channel}")
        """
    )
    assert sql_built_from_strings(good) == []


def test_sql_is_parameterized_no_query_is_built_from_strings():
    """Every statement in the library passes its values as parameters; identifiers are composed
    with psycopg.sql; the only f-string SQL is LISTEN on a channel made of a validated schema
    name (LISTEN takes no parameters) and COPY with a literal column list."""
    offenders = []
    for path in sorted(list((ROOT / "actors").rglob("*.py")) + list((ROOT / "supervision").rglob("*.py"))):
        offenders += sql_built_from_strings(path.read_text(), str(path.relative_to(ROOT)))
    assert offenders == []
