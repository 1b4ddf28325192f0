"""Security of what users hand in and what is left on disk: names, discovery records, secrets."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
import subprocess
import sys
import time

import pytest

from actors.jobs import Schedule
from actors.jobs.periodic import Scheduler, periodic_spec
from actors.jobs.service import JobsService
from actors.jobs.worker import Worker
from actors.jobs.errors import BadJob
from actors.jobs.tree import jobs_tree
from actors.limiter import LimiterServer
from actors.projector import Projection, ProjectorStatus, load_projection, projector_spec
from actors.projector.actor import Projector
from actors.projector.errors import UnknownProjection
from actors.stores.config import DatabaseConfig
from supervision import ChildSpec, ConfigError, Runtime, SpecError, StartFailed, SupervisorSpec, auth, discovery
from supervision.errors import UnsafeState
from supervision.liveness import ProcessIdentity
from supervision.specs import validate_name
from tests.support import Echo

BAD_NAMES = ["echo\n", "echo\r", "ec\x00ho", "echo\t", "\necho", "e\x1b[31mcho", "echo\u2028"]


# --- names (point 6) ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_with_a_control_character_is_refused_everywhere_it_becomes_an_identifier(name):
    with pytest.raises(SpecError, match="not a valid name"):
        validate_name(name)
    with pytest.raises(SpecError):
        ChildSpec(name, Echo)
    with pytest.raises(SpecError):
        SupervisorSpec(name)
    with pytest.raises(ConfigError, match="not a valid runtime name"):
        Runtime(name=name)


def test_an_ask_to_a_name_with_a_trailing_newline_is_refused_before_it_is_sent(make_runtime):
    rt = make_runtime("simpleSystemBase").start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    assert rt.ask("echo", "hi") == "hi"
    with pytest.raises(SpecError, match="not a valid name"):
        rt.ask("echo\n", "hi")
    with pytest.raises(SpecError, match="not a valid name"):
        rt.tell("echo\n", "hi")


@pytest.mark.parametrize("name", ["a/b", "../escape", "/etc/passwd", ".hidden", "a:b", "", "x" * 65, "a b"])
def test_a_runtime_name_is_a_safe_file_name_or_a_clear_error(name, tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="not a valid runtime name"):
        Runtime(name=name)
    with pytest.raises(ConfigError, match="not a valid runtime name"):
        discovery.find(name)
    assert not (tmp_path / "runtimes").exists() or list((tmp_path / "runtimes").iterdir()) == []


def test_a_runtime_name_with_dots_and_dashes_still_works(make_runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    rt = make_runtime("multiprocTCPBase", name="node-1.eu_west").start()
    assert discovery.find("node-1.eu_west").kernel_pid == rt._kernel_identity.pid


#: what a node name must never be: control characters, escape sequences, empty or oversize
BAD_NODES = [*BAD_NAMES, "evil\n\x1b[31m", "\x1b]0;owned\x07", "", "n" * 129]


#: every helper that takes a node name, and the field its refusal names
NODE_SPECS = [(jobs_tree, "jobs_tree.node"), (projector_spec, "projector_spec.node"), (periodic_spec, "periodic_spec.node")]


@pytest.mark.parametrize("node", BAD_NODES)
@pytest.mark.parametrize("spec, field", NODE_SPECS, ids=[field for _, field in NODE_SPECS])
def test_a_node_name_with_a_control_character_is_refused_where_it_is_given(spec, field, node):
    with pytest.raises(SpecError, match="not a valid name") as refused:
        spec(DatabaseConfig("postgresql://unused", "unused"), node=node)
    assert refused.value.field == field


def test_a_node_name_such_as_a_host_and_pid_is_accepted():
    config = DatabaseConfig("postgresql://unused", "unused")
    tree = jobs_tree(config, node="node-a.eu_west:4242")
    service = next(child for child in tree.children if child.name == "jobs-service")
    assert service.kwargs["node"] == "node-a.eu_west:4242"
    assert projector_spec(config, node="node-a").children[0].kwargs["node"] == "node-a"
    assert jobs_tree(config).children[0].kwargs["node"] is None  # no node: the service names itself
    assert periodic_spec(config, node="node-a").kwargs["node"] == "node-a"


#: the actors that take a node name, started directly with a ChildSpec (no helper checked it)
NODE_ACTORS = [Projector, Worker, JobsService, Scheduler, LimiterServer]


@pytest.mark.parametrize("actor", NODE_ACTORS, ids=[actor.__name__ for actor in NODE_ACTORS])
def test_an_actor_started_directly_with_an_escape_sequence_as_its_node_does_not_start(make_runtime, db_config, actor):
    """A ChildSpec bypasses jobs_tree, projector_spec and periodic_spec: each actor checks its
    node itself, before the name reaches a process row, an application_name or the tree."""
    rt = make_runtime("multiprocQueueBase").start()
    bad = ChildSpec("bad", actor, kwargs={"database": db_config, "node": "evil\n\x1b[31m"})
    with pytest.raises(StartFailed, match=f"{actor.__name__}.node"):
        rt.start(bad)
    rt.start(ChildSpec("good", actor, kwargs={"database": db_config, "node": "node-a"}))
    assert rt.tree()["good"].status == "running"
    if actor is Projector:
        assert rt.ask("good", ProjectorStatus(), timeout=10)["node"] == "node-a"


@pytest.mark.parametrize("name", [*BAD_NAMES, "evil\n\x1b[31m", "", "s" * 129])
def test_a_schedule_name_with_a_control_character_is_refused(name):
    with pytest.raises(BadJob, match="Schedule.name"):
        Schedule(name, "* * * * *", "noop")
    assert Schedule("nightly.report-1", "* * * * *", "noop").name == "nightly.report-1"


@pytest.mark.parametrize("name", [*BAD_NAMES, "evil\n\x1b[31m", "", "p" * 64])
def test_a_projection_name_with_a_control_character_is_refused(name):
    evil = type("Evil", (Projection,), {"name": name, "apply": lambda self, conn, events: None})
    with pytest.raises(UnknownProjection, match="not a valid identifier"):
        load_projection(evil)
    with pytest.raises(UnknownProjection, match="not a valid identifier"):
        projector_spec(DatabaseConfig("postgresql://unused", "unused"), evil)


# --- discovery records (point 3) ---------------------------------------------------------------


def test_the_discovery_record_is_plain_data_written_0600_in_a_0700_directory(make_runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    os.umask(old := os.umask(0o022))  # the usual umask: files 0644, directories 0755 unless we say otherwise
    rt = make_runtime("multiprocTCPBase", name="plain").start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    directory, path = tmp_path / "runtimes", tmp_path / "runtimes" / "plain.json"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"name", "base", "host", "admin_port", "kernel_port", "kernel_pid", "kernel_start", "owner_pid", "started_at", "secret"}
    assert all(isinstance(value, (str, int, float)) for value in data.values())
    assert (data["host"], data["admin_port"], data["kernel_pid"]) == ("127.0.0.1", rt.admin_port, rt._kernel_identity.pid)
    attached = Runtime.attach("plain")  # the kernel's address is rebuilt from host and port
    try:
        assert attached.ask("echo", "through the rebuilt address") == "through the rebuilt address"
    finally:
        attached.stop()


def test_a_records_directory_of_ours_left_0755_by_an_older_version_is_tightened(make_runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    (tmp_path / "runtimes").mkdir(mode=0o755)
    os.chmod(tmp_path / "runtimes", 0o755)
    make_runtime("multiprocTCPBase", name="tight").start()
    assert stat.S_IMODE((tmp_path / "runtimes").stat().st_mode) == 0o700


class WritesAFile:
    """Unpickling this writes a file: the proof that a record's pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"id > {self.path}",))


def _plant(path, rt: Runtime, marker) -> None:
    """A record in the format of the previous version, whose kernel address is a pickle that
    writes `marker` when loaded, pointing at a live runtime so that old code gets as far as it."""
    identity = ProcessIdentity.current()
    record = {
        "name": path.stem, "base": "multiprocTCPBase", "admin_port": rt.admin_port,
        "kernel": base64.b64encode(pickle.dumps(WritesAFile(str(marker)))).decode(),
        "kernel_pid": identity.pid, "kernel_start": identity.start_time, "owner_pid": os.getpid(),
        "started_at": time.time(), "listen": "127.0.0.1",
    }  # fmt: skip
    path.write_text(json.dumps(record))


def _cli(*args: str, state_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "THESPIAN_OTP_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test gives a planted record to another user (chown)")


def test_a_pickle_record_planted_by_another_user_is_refused_and_never_loaded(make_runtime, tmp_path, monkeypatch):
    _root_only()
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    rt = make_runtime("multiprocTCPBase", name="victim").start()
    marker = tmp_path / "pwned"
    planted = tmp_path / "runtimes" / "victim.json"
    _plant(planted, rt, marker)
    os.chown(planted, 65534, 65534)  # nobody's record
    for command in ("tree", "status"):
        result = _cli(command, "--name", "victim", state_dir=tmp_path)
        assert result.returncode == 1, result
        assert "refusing the runtime record" in result.stderr and "uid 65534" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    with pytest.raises(UnsafeState):
        Runtime.attach("victim")
    assert not marker.exists(), marker.read_text()


def test_a_records_directory_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    _root_only()
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    (tmp_path / "runtimes").mkdir(mode=0o700)
    os.chown(tmp_path / "runtimes", 65534, 65534)
    result = _cli("tree", state_dir=tmp_path)
    assert result.returncode == 1 and "refusing the runtime directory" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(UnsafeState):
        Runtime("multiprocTCPBase", name="mine").start()  # nothing is published into someone else's directory


def test_a_record_others_can_write_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    directory = discovery.ensure_dir()
    (directory / "loose.json").write_text("{}")
    os.chmod(directory / "loose.json", 0o666)
    with pytest.raises(UnsafeState, match="other users can write it"):
        discovery.read("loose")


def test_a_pickle_record_of_our_own_is_ignored_never_unpickled(make_runtime, tmp_path, monkeypatch):
    """A record in the previous version's format (a pickled kernel address) is not a record."""
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    rt = make_runtime("multiprocTCPBase", name="current").start()
    marker = tmp_path / "pwned"
    _plant(tmp_path / "runtimes" / "old.json", rt, marker)
    result = _cli("tree", "--name", "old", state_dir=tmp_path)
    assert result.returncode == 1 and "no runtime named 'old' is running" in result.stderr, result.stderr
    assert not marker.exists()


def test_a_symlinked_record_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    directory = discovery.ensure_dir()
    (tmp_path / "elsewhere.json").write_text("{}")
    (directory / "link.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafeState):
        discovery.read("link")


# --- secrets ---------------------------------------------------------------------------------------


def test_a_short_secret_is_refused_and_a_secret_file_must_be_private(tmp_path):
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Runtime(secret="short")
    cookie = tmp_path / "cookie"
    cookie.write_text("0123456789abcdef0123456789abcdef\n")
    os.chmod(cookie, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        auth.read_secret_file(cookie)
    os.chmod(cookie, 0o600)
    assert auth.read_secret_file(cookie) == b"0123456789abcdef0123456789abcdef"


def test_a_frame_signed_with_another_secret_or_cut_short_is_never_unpickled(tmp_path):
    signer = auth.SignedPickle()
    signer.keys[1] = b"k" * 32
    signer.ring = (b"k" * 32,)
    frame = signer.dumps(WritesAFile(str(tmp_path / "pwned")), b"x" * 32)  # signed, but with another secret
    with pytest.raises(auth.Rejected):
        signer.loads(frame)
    with pytest.raises(auth.Rejected):
        signer.loads(frame[:10])
    assert signer.loads(signer.dumps({"ok": 1}, b"k" * 32)) == {"ok": 1}
    assert not (tmp_path / "pwned").exists()
    assert signer.rejected == 2


PEER = r"""
import os, sys
from datetime import timedelta
import thespian.system.systemBase
from thespian.actors import ActorAddress, ActorSystem
# thespian waits up to this long (10 s) for an admin to start or stop; its own needs far less
thespian.system.systemBase.MAX_SYSTEM_SHUTDOWN_DELAY = timedelta(seconds=1)
from thespian.system.transport.IPBase import TCPv4ActorAddress
from supervision import auth, bases
secret, host, port, bind, marker = sys.argv[1:]
admin = bases.free_port(bind)  # the peer's own actor system, as on another host
if secret:  # else a plain thespian program: what it sends is pickled, unsigned
    auth.install(auth.check_secret(secret), admin)  # text, as read from a cookie file
bases.bind_to(bind)
message = "from a peer"
if marker:  # what the runtime would run if it unpickled the frame
    message = type("WritesAFile", (), {"__reduce__": lambda self: (os.system, ("id > " + marker,))})()
system = ActorSystem("multiprocTCPBase", {"Admin Port": admin}, transientUnique=True)
try:
    print(repr(system.ask(ActorAddress(TCPv4ActorAddress(host, int(port), external=True)), message, 3)), flush=True)
finally:
    system.shutdown()  # its admin, a child of this process, holds our stdout
"""


def ask_as_peer(secret: str, rt: Runtime, actor: str, *, bind: str = "127.0.0.1", marker=None, prefix: tuple[str, ...] = ()) -> str:
    """What another program, holding `secret` (or none: ""), gets back when it asks `actor` of
    `rt` at its address; run with `prefix` (`Host.exec`) it is on another host, its own actor
    system listening on `bind`. With `marker`, it sends a pickle that would write that file."""
    host, port = rt.whereis(actor).address.addressDetails.sockname
    args = [secret, host, str(port), bind, str(marker or "")]
    result = subprocess.run([*prefix, sys.executable, "-c", PEER, *args], capture_output=True, text=True, timeout=60)
    return result.stdout.strip() + result.stderr[-300:]


def test_a_peer_with_the_shared_secret_is_served_and_one_with_another_secret_is_not(make_runtime, tmp_path):
    """The multi-host setup in small: an explicit secret, shared like an Erlang cookie, is what
    another process (another host) needs; with a different one its frames are dropped unread.
    On real hosts (network namespaces): tests/test_security_hosts.py."""
    shared = "0123456789abcdef" * 4
    rt = make_runtime("multiprocTCPBase", secret=shared, log_level="WARNING", log_file=str(tmp_path / "log"))
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    assert ask_as_peer(shared, rt, "echo") == "'from a peer'"
    assert "'from a peer'" not in ask_as_peer("another secret, long enough!", rt, "echo")
    assert rt.ask("echo", "still here") == "still here"
    assert "rejected" in (tmp_path / "log").read_text()


def test_a_frame_announcing_a_huge_size_without_the_secret_is_dropped_before_its_body_is_read(make_runtime):
    """Without the early check the runtime buffered whatever a stranger announced (here 1 GB)."""
    import socket

    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    port = rt.whereis("echo").address.addressDetails.sockname[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stranger:
        stranger.sendall(b"1000000000>" + b"\0" * 64)
        with pytest.raises(OSError):  # the runtime closed the connection: the rest cannot be sent
            for _ in range(1000):  # up to 64 MB, far beyond the socket buffers
                stranger.sendall(b"\0" * 65536)
    assert rt.ask("echo", "still serving") == "still serving"


def test_a_runtime_forgets_its_secret_and_reaps_its_launcher_however_it_ends(make_runtime):
    # a crashed runtime's key stayed installed: a later runtime of this process that picked the
    # same admin port would have signed with, and accepted, the dead one's secret
    crashed, stopped = make_runtime("multiprocTCPBase").start(), make_runtime("multiprocTCPBase").start()
    assert {crashed.admin_port, stopped.admin_port} <= set(auth.SIGNER.keys)
    launcher = crashed._group  # thespian's admin launcher leads the group, a child of this process
    crashed.crash()
    stopped.stop()
    assert crashed.admin_port not in auth.SIGNER.keys and stopped.admin_port not in auth.SIGNER.keys
    with pytest.raises(ChildProcessError):  # and crash() reaped it: no zombie per crash in a REPL
        os.waitpid(launcher, os.WNOHANG)
