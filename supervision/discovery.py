"""Where running runtimes can be found: one small record per named runtime, on this machine.

A `Runtime(name="demo")` on multiprocTCPBase writes `<user state dir>/runtimes/demo.json`
(admin port, kernel address, pids) when it starts and removes it when it stops. Another process
(`thespian-otp tree`, `Runtime.attach("demo")`) reads it to talk to that live system. Records
of runtimes whose kernel is gone are ignored and cleaned up.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import attrs

from supervision.errors import RuntimeNotRunning
from supervision.liveness import ProcessIdentity


def records_dir() -> Path:
    override = os.environ.get("THESPIAN_OTP_STATE_DIR")
    if override:
        return Path(override) / "runtimes"
    import platformdirs

    return Path(platformdirs.user_state_dir("thespian-otp")) / "runtimes"


@attrs.frozen
class RuntimeRecord:
    name: str
    base: str
    admin_port: int
    kernel: str  # base64 of the pickled kernel ActorAddress
    kernel_pid: int
    kernel_start: int
    owner_pid: int
    started_at: float
    listen: str = "127.0.0.1"

    @property
    def kernel_address(self) -> Any:
        return pickle.loads(base64.b64decode(self.kernel))

    @property
    def kernel_identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.kernel_pid, self.kernel_start)

    @property
    def alive(self) -> bool:
        return self.kernel_identity.is_alive()

    @classmethod
    def make(cls, name: str, base: str, admin_port: int, kernel: Any, identity: ProcessIdentity, listen: str) -> "RuntimeRecord":
        blob = base64.b64encode(pickle.dumps(kernel)).decode()
        return cls(name, base, admin_port, blob, identity.pid, identity.start_time, os.getpid(), time.time(), listen)


def _path(name: str) -> Path:
    return records_dir() / f"{name}.json"


def publish(record: RuntimeRecord) -> None:
    directory = records_dir()
    directory.mkdir(parents=True, exist_ok=True)
    existing = read(record.name)
    if existing is not None and existing.alive and existing.kernel_pid != record.kernel_pid:
        from supervision.errors import ConfigError

        raise ConfigError(
            f"name: a runtime named {record.name!r} is already running (pid {existing.owner_pid}); "
            "choose another name or stop that one"
        )
    temporary = _path(record.name).with_suffix(".tmp")
    temporary.write_text(json.dumps(attrs.asdict(record)))
    temporary.replace(_path(record.name))


def withdraw(name: str, kernel_pid: int) -> None:
    record = read(name)
    if record is not None and record.kernel_pid == kernel_pid:
        _path(name).unlink(missing_ok=True)


def read(name: str) -> RuntimeRecord | None:
    try:
        return RuntimeRecord(**json.loads(_path(name).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def live_records() -> list[RuntimeRecord]:
    """Records of runtimes that are running; stale ones are removed."""
    found = []
    directory = records_dir()
    if not directory.exists():
        return found
    for path in sorted(directory.glob("*.json")):
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
