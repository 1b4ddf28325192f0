"""Where running runtimes can be found: one small plain-data record per named runtime, on this machine.

A `Runtime(name="demo")` on multiprocTCPBase writes `<user state dir>/runtimes/demo.json` (host,
admin and kernel ports, the kernel's pid and start time, the transport secret) when it starts and
removes it when it stops. Another process (`thespian-otp tree`, `Runtime.attach("demo")`) reads it
to talk to that live system. Records of runtimes whose kernel is gone are ignored and cleaned up.

Whoever can write a record chooses where the reader connects and with which secret, so:
- a record is JSON and nothing in it is unpickled (the kernel's address is rebuilt from host and
  port; records of older versions, which held a pickle, are ignored, never loaded);
- it is written 0600 in a 0700 directory, and a record or directory owned by another user, or
  writable by one, is refused with `UnsafeState` (one line), never read.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import attrs

from supervision.errors import ConfigError, RuntimeNotRunning, UnsafeState
from supervision.liveness import ProcessIdentity

#: A runtime's name is a file name: no "/", no control characters, no leading ".".
RUNTIME_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")


def check_runtime_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not RUNTIME_NAME.fullmatch(name):
        raise ConfigError(
            f"{field}: {name!r} is not a valid runtime name: use 1-64 letters, digits and _ . -, "
            "starting with a letter, digit or _ (it names a file)"
        )
    return name


def records_dir() -> Path:
    override = os.environ.get("THESPIAN_OTP_STATE_DIR")
    if override:
        return Path(override) / "runtimes"
    import platformdirs

    return Path(platformdirs.user_state_dir("thespian-otp")) / "runtimes"


@attrs.frozen
class RuntimeRecord:
    """The discovery record of one named runtime (JSON, see the module docstring): where its
    kernel listens, which process is the kernel (pid and start time, so a reused pid is not
    mistaken for it), which program owns it, and the transport secret an attaching process
    signs its frames with."""

    name: str
    base: str
    host: str
    admin_port: int
    kernel_port: int
    kernel_pid: int
    kernel_start: int
    owner_pid: int
    started_at: float
    #: hex of the transport secret (supervision.auth): the reader signs its frames with it
    secret: str = attrs.field(repr=False)

    @property
    def kernel_address(self) -> Any:
        from thespian.actors import ActorAddress
        from thespian.system.transport.IPBase import TCPv4ActorAddress

        return ActorAddress(TCPv4ActorAddress(self.host, self.kernel_port, external=True))

    @property
    def kernel_identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.kernel_pid, self.kernel_start)

    @property
    def alive(self) -> bool:
        return self.kernel_identity.is_alive()

    @classmethod
    def make(cls, name: str, base: str, admin_port: int, kernel: Any, identity: ProcessIdentity, listen: str, secret: bytes) -> "RuntimeRecord":
        host, port = kernel.addressDetails.sockname[:2]
        return cls(name, base, host or listen, admin_port, port, identity.pid, identity.start_time, os.getpid(), time.time(), secret.hex())

    @classmethod
    def from_json(cls, data: Any) -> "RuntimeRecord | None":
        """The record in `data`, or None when it is not one of ours (wrong fields or types)."""
        if not isinstance(data, dict) or set(data) != {f.name for f in attrs.fields(cls)}:
            return None
        texts = ("name", "base", "host", "secret")
        numbers = ("admin_port", "kernel_port", "kernel_pid", "kernel_start", "owner_pid")
        if not all(isinstance(data[k], str) for k in texts) or not all(type(data[k]) is int for k in numbers):
            return None
        if not isinstance(data["started_at"], (int, float)) or not re.fullmatch(r"[0-9a-f]{64}", data["secret"]):
            return None
        return cls(**data)


def _path(name: str) -> Path:
    return records_dir() / f"{check_runtime_name(name)}.json"


def _check_owned(path: Path, st: os.stat_result, what: str) -> None:
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafeState(
            f"refusing the runtime {what} {path}: it belongs to uid {st.st_uid}, not to you (uid {me}); "
            "whoever owns it chooses where thespian-otp connects. Remove it, or use THESPIAN_OTP_STATE_DIR"
        )
    if st.st_mode & 0o022:
        raise UnsafeState(f"refusing the runtime {what} {path}: other users can write it (mode {stat.filemode(st.st_mode)}); chmod go-w it")


def _check_dir(directory: Path) -> None:
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeState(f"refusing the runtime directory {directory}: it is not a directory (a symlink or a file)")
    _check_owned(directory, st, "directory")


def ensure_dir() -> Path:
    """The records directory, created 0700 (and tightened to 0700 if it is ours but looser)."""
    directory = records_dir()
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    _check_dir(directory)
    if os.lstat(directory).st_mode & 0o077:
        os.chmod(directory, 0o700)  # ours, from a version that made it 0755: records hold the secret
    return directory


def publish(record: RuntimeRecord) -> None:
    ensure_dir()
    existing = read(record.name)
    if existing is not None and existing.alive and existing.kernel_pid != record.kernel_pid:
        raise ConfigError(
            f"name: a runtime named {record.name!r} is already running (pid {existing.owner_pid}); "
            "choose another name or stop that one"
        )
    target = _path(record.name)
    temporary = target.with_name(f".{record.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(attrs.asdict(record), out)
    os.replace(temporary, target)


def withdraw(name: str, kernel_pid: int) -> None:
    try:
        record = read(name)
    except UnsafeState:
        return  # not ours: leave it alone
    if record is not None and record.kernel_pid == kernel_pid:
        _path(name).unlink(missing_ok=True)


def read(name: str) -> RuntimeRecord | None:
    """The record of `name`; None when there is none or it is not a record of this version.

    Raises `UnsafeState` when the record or its directory belongs to, or can be written by,
    another user."""
    path = _path(name)
    _check_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symlink
        raise UnsafeState(f"refusing the runtime record {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeState(f"refusing the runtime record {path}: not a regular file")
        _check_owned(path, st, "record")
        try:
            return RuntimeRecord.from_json(json.loads(handle.read(64 * 1024)))
        except ValueError:
            return None


def live_records() -> list[RuntimeRecord]:
    """Records of runtimes that are running; stale ones are removed."""
    found: list[RuntimeRecord] = []
    directory = records_dir()
    _check_dir(directory)
    if not directory.exists():
        return found
    for path in sorted(directory.glob("*.json")):
        if not RUNTIME_NAME.fullmatch(path.stem):
            continue
        record = read(path.stem)
        if record is None:
            continue
        if record.alive:
            found.append(record)
        else:
            path.unlink(missing_ok=True)
    return found


def find(name: str | None = None) -> RuntimeRecord:
    """The live runtime called `name`, or the only live one when `name` is None."""
    if name is not None:
        check_runtime_name(name, "--name")
    records = live_records()
    if name is not None:
        for record in records:
            if record.name == name:
                return record
        running = ", ".join(r.name for r in records) or "none"
        raise RuntimeNotRunning(f"no runtime named {name!r} is running on this machine (running: {running})")
    if not records:
        raise RuntimeNotRunning(
            "no named runtime is running on this machine; start one with Runtime(name=...) "
            "or `thespian-otp demo --hold`"
        )
    if len(records) > 1:
        raise RuntimeNotRunning(f"several runtimes are running ({', '.join(r.name for r in records)}); pick one with --name")
    return records[0]
