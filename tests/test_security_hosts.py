"""Multi-host mode on real hosts: a runtime listening on a host address with a shared secret
serves a peer on another host (a network namespace, tests/netns.py) that holds the secret, and
drops, before unpickling a byte, what a peer with another secret or none sends it."""

from __future__ import annotations

import os
import secrets

import psutil
import pytest

from supervision import ChildSpec, SupervisorSpec, auth
from supervision.liveness import group_members
from tests.support import Journal
from tests.test_netns import hosts  # noqa: F401 - the fixture: three namespaces, or a skip with the reason
from tests.test_security import ask_as_peer
from tests.test_security_attack import _pid


def listening_addresses(pids: set[int]) -> set[str]:
    return {c.laddr.ip for pid in pids for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN}


@pytest.mark.timeout(120)
def test_a_peer_on_another_host_with_the_shared_secret_is_served_and_one_with_another_or_none_is_refused_unread(
    hosts, make_runtime, tmp_path, monkeypatch  # noqa: F811
):  # hosts first: a host's link, and with it the address the runtime listens on, goes after the runtime stopped
    friend, stranger = hosts[0], hosts[1]
    monkeypatch.setattr(auth.SIGNER, "log_interval", 3600.0)  # one report per process for the whole test
    cookie, log_file, marker = tmp_path / "cookie", tmp_path / "runtime.log", tmp_path / "pwned"
    cookie.write_text(secrets.token_hex(32) + "\n")  # the README's steps for several hosts
    cookie.chmod(0o600)
    here = friend.gateway  # this side of the friend's link: the runtime's host address, which the stranger reaches too
    rt = make_runtime(
        "multiprocTCPBase", listen=here, trusted_network=True, secret=auth.read_secret_file(cookie), log_level="WARNING", log_file=str(log_file)
    )
    journal = {"path": str(tmp_path / "journal")}
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Journal, kwargs=journal), ChildSpec("other", Journal, kwargs=journal)]))
    members = set(group_members(rt._group))
    assert rt.whereis("echo").address.addressDetails.sockname[0] == here
    assert listening_addresses(members) == {here}  # not 0.0.0.0, not loopback: only the address asked for
    owner = listening_addresses({os.getpid()})  # its socket for replies (and any left by earlier tests: loopback)
    assert here in owner and "0.0.0.0" not in owner, owner

    assert ask_as_peer(cookie.read_text(), rt, "echo", prefix=friend.exec, bind=friend.address) == "'from a peer'"
    # from the stranger's host: a wrong cookie to one actor, a plain thespian program (nothing signed) to another
    stranger_peer = {"marker": marker, "prefix": stranger.exec, "bind": stranger.address}
    assert ask_as_peer("another secret, long enough!", rt, "echo", **stranger_peer) == "None"  # never answered
    assert ask_as_peer("", rt, "other", **stranger_peer) == "None"
    assert not marker.exists(), f"the pickle ran: {marker.read_text()}"
    assert set(group_members(rt._group)) == members, "a process of the actor system died"
    assert [rt.ask(name, i) for i in range(10) for name in ("echo", "other")] == [i for i in range(10) for _ in range(2)]

    # each receiving process wrote its report before it dropped the frame: once, however many frames
    reports = [_pid(line) for line in log_file.read_text().splitlines() if "rejected" in line and "nothing of them was unpickled" in line]
    assert sorted(reports) == sorted([rt.ask("echo", "pid"), rt.ask("other", "pid")]), log_file.read_text()
