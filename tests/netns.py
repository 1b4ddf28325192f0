"""Hosts for multi-node tests: Linux network namespaces joined to this one by veth links.

Each `Host` is a namespace with its own loopback and one link to this namespace: it has
10.B.N.2, this side 10.B.N.1 (B random per run, N the host's number). A node started with
`host.exec` runs its actor system on the namespace's own loopback and reaches PostgreSQL over
that link, as a separate machine would. `partition()` takes the link down: packets vanish and
no socket is closed, as when a host loses its network or power.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2; `Hosts.create` raises `Unavailable`
otherwise, and the tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

import attrs
import pytest

from actors.stores.embedded import EmbeddedPostgres


class Unavailable(Exception):
    """Network namespaces cannot be made here (not root, no iproute2, no CAP_NET_ADMIN)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise Unavailable(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


@attrs.frozen
class Host:
    number: int
    namespace: str
    link: str  # this side of the veth pair
    address: str  # the host's address
    gateway: str  # this namespace's address on the link: where the host reaches PostgreSQL

    @property
    def exec(self) -> tuple[str, ...]:
        """The command prefix that runs a program on this host."""
        return ("ip", "netns", "exec", self.namespace)

    def partition(self) -> None:
        _ip("link", "set", self.link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.link, "up")


class Hosts:
    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = hosts

    @classmethod
    def create(cls, count: int) -> "Hosts":
        if shutil.which("ip") is None:
            raise Unavailable("iproute2's `ip` is not installed")
        tag, block = uuid.uuid4().hex[:4], random.randint(100, 250)
        made = cls([])
        try:
            for n in range(1, count + 1):
                host = Host(n, f"totp-{tag}-{n}", f"tt{tag}{n}h", f"10.{block}.{n}.2", f"10.{block}.{n}.1")
                inside = f"tt{tag}{n}n"
                _ip("netns", "add", host.namespace)
                made.hosts.append(host)
                _ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", host.namespace)
                _ip("addr", "add", f"{host.gateway}/24", "dev", host.link)
                _ip("link", "set", host.link, "up")
                for args in (
                    ("addr", "add", f"{host.address}/24", "dev", inside),
                    ("link", "set", inside, "up"),
                    ("link", "set", "lo", "up"),
                    ("route", "add", "default", "via", host.gateway),
                ):
                    _ip("netns", "exec", host.namespace, "ip", *args)
        except Unavailable:
            made.close()
            raise
        return made

    def close(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=10)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True, timeout=10)  # gone with the peer, usually
        self.hosts = []

    def __iter__(self):
        return iter(self.hosts)

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]


def serve_over_links(server: EmbeddedPostgres, hosts: Hosts) -> tuple[str, int]:
    """Restart `server` listening on TCP on every host's gateway address too (beside its Unix
    socket), trusting connections from the hosts' networks. Returns the Unix-socket DSN (with
    the new port) and the port; a host connects to postgresql://postgres@GATEWAY:PORT/postgres."""
    with socket.socket() as probe:  # a free port: the server listens on the gateways only
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(server.data_dir / "pg_hba.conf", "a") as hba:
        for host in hosts:
            hba.write(f"host all all {host.address}/32 trust\n")
    server.stop_server()
    server.start_server(listen_addresses=",".join(host.gateway for host in hosts), port=port)
    return server.dsn, port


@contextlib.contextmanager
def hosts_or_skip(count: int) -> Iterator[Hosts]:
    """`count` hosts for a test, removed afterwards; the test skips, saying why, where network
    namespaces cannot be made."""
    try:
        made = Hosts.create(count)
    except Unavailable as exc:
        pytest.skip(f"network namespaces are not available here: {exc}")
    try:
        yield made
    finally:
        made.close()
