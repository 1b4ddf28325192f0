"""The attacker: another local user connects to every listening port of a live runtime.

As root, the test creates a user, finds every socket the actor system's processes listen on
(psutil), and runs, as that user, a stdlib-only script that sends to each port a pickle that
would write a file, the same pickle behind a made-up tag, garbage, cut-short frames, a huge
length header, and a flood of connections. Nothing may be written, every process must survive,
each process logs the rejection once (rate-limited), and the owner's asks keep working.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time

import psutil
import pytest

from supervision import ChildSpec, SupervisorSpec, auth
from supervision.liveness import group_members
from tests.support import MULTIPROC_BASES, Echo

ATTACKER = "thespian-otp-attacker"

ATTACK = r'''
import json, os, pickle, socket, sys, threading, time
ports, marker, what = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {"uid": os.getuid(), "sent": 0, "refused": 0, "proc": []}

class WritesAFile:
    def __reduce__(self):
        return (os.system, ("id > " + marker,))

evil = pickle.dumps(WritesAFile())
frames = [
    b"%d>" % len(evil) + evil,                                  # thespian's framing, no tag
    b"%d>" % (32 + len(evil)) + b"\0" * 32 + evil,              # the same behind a made-up tag
    b"%d>" % (32 + len(evil)) + os.urandom(32) + evil,
    os.urandom(300),                                            # garbage
    b"not a length>" + evil,
    b"1000>" + evil[:20],                                       # cut short, then closed
    b"99999999999>" + b"x" * 100,                               # a huge announced size
    b"4", b"",                                                  # a lone digit; an empty connection
]

def send(port, frame):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(frame)
            s.settimeout(0.2)
            try:
                s.recv(100)
            except OSError:
                pass
        out["sent"] += 1
    except OSError:
        out["refused"] += 1

if what == "ports":
    for port in ports:
        for frame in frames:
            send(port, frame)
    # a flood: 50 connections held open on every port at once, then 300 quick ones in threads
    held = []
    for port in ports:
        for _ in range(50):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except OSError:
                out["refused"] += 1
    time.sleep(0.5)
    for s in held:
        s.close()
    threads = [threading.Thread(target=send, args=(ports[i % len(ports)], frames[i % len(frames)])) for i in range(300)]
    for t in threads: t.start()
    for t in threads: t.join()
else:  # the queue base has no port: try the actor processes' pipes through /proc
    for pid in ports:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
            out["proc"].append([pid, "listed %d fds" % len(fds)])
            for fd in fds:
                with open("/proc/%d/fd/%s" % (pid, fd), "wb") as pipe:
                    pipe.write(evil)
                out["proc"].append([pid, "WROTE to fd " + fd])
        except OSError as exc:
            out["proc"].append([pid, type(exc).__name__])
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def attacker():
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates another user to attack the runtime as")
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin")
    if shutil.which("useradd") is None or python is None:
        pytest.skip("needs useradd and a system python3 that another user can run")
    try:
        pwd.getpwnam(ATTACKER)
        created = False
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ATTACKER], check=True)
        created = True
    entry = pwd.getpwnam(ATTACKER)
    yield entry.pw_uid, entry.pw_gid, python
    if created:
        subprocess.run(["userdel", ATTACKER], check=False)


def run_as(attacker, targets, marker, what, meanwhile=lambda: None) -> dict:
    """Run the attack as the other user; call `meanwhile` (the owner's work) until it ends."""
    uid, gid, python = attacker
    process = subprocess.Popen(
        [python, "-I", "-c", ATTACK, json.dumps(targets), str(marker), what],
        user=uid, group=gid, extra_groups=[], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        meanwhile()
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["uid"] == uid != os.geteuid()
    return report


def listening(members: set[int]) -> dict[int, set[int]]:
    """port -> the processes holding its listening socket (thespian's children inherit some)."""
    holders: dict[int, set[int]] = {}
    for pid in members:
        for c in psutil.Process(pid).net_connections("inet"):
            if c.status == psutil.CONN_LISTEN:
                holders.setdefault(c.laddr.port, set()).add(pid)
    return holders


@pytest.fixture
def quiet_reports(monkeypatch):
    """One report per process for the whole attack: the rate limit's window, a constructor
    argument of SignedPickle, set before the actor processes fork."""
    monkeypatch.setattr(auth.SIGNER, "log_interval", 3600.0)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_another_user_cannot_make_the_runtime_run_code_and_it_keeps_serving(base, attacker, make_runtime, tmp_path, quiet_reports):
    os.chmod(tmp_path, 0o777)  # the attacker may write its marker here itself; the point is what *we* write
    marker, log_file = tmp_path / "pwned", tmp_path / "runtime.log"
    rt = make_runtime(base, log_level="WARNING", log_file=str(log_file))
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Echo), ChildSpec("other", Echo)]))
    assert rt.ask("echo", "before") == "before"
    members = set(group_members(rt._group))
    ports = listening(members | {os.getpid()})
    if base == "multiprocQueueBase":
        # nothing to connect to: no inet or unix socket in any process of the actor system
        assert ports == {}
        assert [c for pid in members for c in psutil.Process(pid).net_connections("all")] == []
        report = run_as(attacker, sorted(members), marker, "proc")
        assert [outcome for _, outcome in report["proc"]] == ["PermissionError"] * len(members), report
    else:
        assert rt.admin_port in ports and len(ports) >= 5, ports  # admin, logger, kernel, monitor, supervisors, actors
        answers: list = []
        report = run_as(attacker, sorted(ports), marker, "ports", lambda: answers.append(rt.ask("echo", len(answers), timeout=10)))
        assert report["sent"] > 9 * len(ports), report
        assert len(answers) >= 5 and answers == list(range(len(answers)))  # the owner was served all along
    assert not marker.exists(), f"the pickle ran: {marker.read_text()}"
    assert set(group_members(rt._group)) == members, "a process of the actor system died"
    assert [rt.ask(name, i) for i in range(20) for name in ("echo", "other")] == [i for i in range(20) for _ in range(2)]
    if base == "multiprocTCPBase":
        receivers = {next(iter(pids)) for pids in ports.values() if len(pids) == 1}  # the only one that can accept
        lines = lambda: [line for line in log_file.read_text().splitlines() if "rejected" in line] if log_file.exists() else []
        deadline = time.monotonic() + 10
        while len({_pid(line) for line in lines()}) < len(receivers - {os.getpid()}) and time.monotonic() < deadline:
            time.sleep(0.05)
        reported = [_pid(line) for line in lines()]
        assert set(reported) >= receivers - {os.getpid()}, (reported, receivers)
        assert set(reported) <= members | {os.getpid()}
        assert len(reported) == len(set(reported)), "one report per process, not one per frame"
        assert all("nothing of them was unpickled" in line for line in lines())


def _pid(line: str) -> int:
    return int(line.rsplit("(pid ", 1)[1].rstrip(")"))
