"""Exposure: nothing listens beyond loopback unless asked for; user input never becomes SQL."""

from __future__ import annotations

import re
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


def test_sql_is_parameterized_no_query_is_built_from_strings():
    """Every execute() in the library passes its values as parameters; identifiers are composed
    with psycopg.sql.Identifier; the only f-string SQL is LISTEN on a channel made of a validated
    schema name (LISTEN takes no parameters)."""
    allowed = {'conn.execute(f"NOTIFY', 'self.listener.execute(f"LISTEN {self.jobs.channel}")', 'self.conn.execute(f"LISTEN {events_channel(database.config.schema)}")'}
    offenders = []
    for path in list((ROOT / "actors").rglob("*.py")) + list((ROOT / "supervision").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            formatted = ".format(" in line and "execute" in line and "sql.SQL(" not in line
            if re.search(r"execute\(\s*f[\"']", line) or re.search(r"execute\([^)]*%\s*\(", line) or formatted:
                if not any(ok in line for ok in allowed):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
