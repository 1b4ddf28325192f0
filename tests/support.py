"""Actors and helpers shared by the tests (module level, so they pickle across processes)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import attrs

from supervision import BadRequest, Recoverable, Server

MULTIPROC_BASES = ["multiprocTCPBase", "multiprocQueueBase"]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))


class Echo(Server):
    def handle(self, message):
        return message


class Journal(Server):
    """Writes 'name pid' to a file when it starts, so tests can see start order."""

    def init(self, path: str):
        with open(path, "a") as handle:
            handle.write(f"{self.name} {os.getpid()}\n")

    def handle(self, message):
        if message == "pid":
            return os.getpid()
        return message


@attrs.frozen
class Put:
    key: str
    value: int


@attrs.frozen
class Get:
    key: str


class UnknownKey(Recoverable):
    def __init__(self, key: str):
        super().__init__(f"no such key {key!r}", key=key)


class KeyValue(Server):
    """A small stateful server with bad-input errors, used to show state survives them."""

    def init(self):
        self.data: dict[str, int] = {}

    def handle(self, message):
        if isinstance(message, Put):
            if not isinstance(message.key, str) or not isinstance(message.value, int):
                raise BadRequest("Put needs a str key and an int value")
            self.data[message.key] = message.value
            return "ok"
        if isinstance(message, Get):
            if not isinstance(message.key, str):
                raise BadRequest("Get needs a str key")
            if message.key not in self.data:
                raise UnknownKey(message.key)
            return self.data[message.key]
        if message == "crash":
            raise RuntimeError("asked to crash")
        if message == "pid":
            return os.getpid()
        if message == "size":
            return len(self.data)
        return super().handle(message)


class CrashLoop(Server):
    """Crashes shortly after every start."""

    def init(self):
        self.send_after(0.01, "crash")

    def handle(self, message):
        raise RuntimeError("crash loop")


class Stubborn(Server):
    """Ignores stop: its terminate hook never returns."""

    def terminate(self, reason):
        time.sleep(3600)

    def handle(self, message):
        if message == "pid":
            return os.getpid()
        return message


class Quitter(Server):
    """Stops itself normally when asked."""

    def handle(self, message):
        if message == "quit":
            self.stop("normal")
            return "bye"
        if message == "crash":
            raise RuntimeError("boom")
        if message == "refuse":
            from supervision.errors import BadRequest

            raise BadRequest("no such order 42")
        if message == "pid":
            return os.getpid()
        return message


class FailingInit(Server):
    def init(self):
        raise ValueError("cannot start")


@attrs.frozen
class Nap:
    seconds: float


class Sleeper(Server):
    """Blocks in its handler for as long as asked (a slow actor)."""

    def handle(self, message):
        if isinstance(message, Nap):
            time.sleep(message.seconds)
            return "rested"
        if message == "pid":
            return os.getpid()
        return message


@attrs.frozen
class Relay:
    """Ask `target` for `message` from inside an actor and pass the answer back."""

    target: str
    message: Any
    timeout: float = 5.0


class Asker(Server):
    """Forwards requests to other actors by name (message-driven asks inside an actor)."""

    def handle(self, message):
        if isinstance(message, Relay):
            reply = self.defer()

            def done(answer):
                if answer.ok:
                    self.reply(reply, answer.value)
                else:
                    self.reply_error(reply, answer.error.to_exception())

            self.ask(message.target, message.message, timeout=message.timeout, then=done)
            return None
        if isinstance(message, Watched):
            self.watch(message.name)
            self.seen_down = getattr(self, "seen_down", [])
            return "watching"
        if message == "downs":
            return list(getattr(self, "seen_down", []))
        from supervision import Down

        if isinstance(message, Down):
            self.seen_down.append((message.name, message.reason))
            return None
        return super().handle(message)


@attrs.frozen
class Watched:
    name: str


class PermitHolder(Server):
    """Takes a permit from the limiter (in-actor, message-driven) and keeps it."""

    def handle(self, message):
        from actors.limiter import Limiter

        if isinstance(message, tuple) and message[0] == "hold":
            reply = self.defer()
            Limiter(self).acquire_then(message[1], lambda answer: self.reply(reply, answer.unwrap().id))
            return None
        if message == "pid":
            return os.getpid()
        return super().handle(message)


class NodeProcess:
    """A node of a multi-node test: `python -m MODULE ARGS` in its own OS process, which prints
    "ready GROUP" once its runtime has started (GROUP: the actor system's process group)."""

    def __init__(self, module: str, *args: str, env: dict | None = None, prefix: tuple[str, ...] = ()) -> None:
        import select
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        self.stderr = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, *args],  # prefix: e.g. `ip netns exec NS`
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            self.stderr.seek(0)
            raise AssertionError(f"{module} {' '.join(args)} did not start (exit {self.proc.poll()}): {self.stderr.read()[-3000:]}")
        self.group = int(line.split()[1])

    def crash(self) -> None:
        """The whole node dies at once, as a host losing power: its runtime and every actor."""
        import signal

        self.proc.kill()
        if self.group:
            try:
                os.killpg(self.group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.crash()


# --- SQL audits of the job system, for multi-node tests ---------------------------------------


def job_audit(database: Any) -> dict[str, int]:
    """Jobs completed twice (by their events), jobs not finished, completion events."""
    with database.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM (SELECT data->>'id' FROM events WHERE type = 'job.completed'"
            "   GROUP BY 1 HAVING count(*) > 1) d) AS twice,"
            " (SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'failed')) AS unfinished,"
            " (SELECT count(*) FROM events WHERE type = 'job.completed') AS completed"
        ).fetchone()
        conn.commit()
    return dict(row)


def completions_per_node(database: Any, after: int = 0) -> dict[str, int]:
    """Completion events per node (the node part of the worker's name), after event `after`."""
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT split_part(data->>'node', ':', 1) AS node, count(*) AS n FROM events"
            " WHERE type = 'job.completed' AND position > %s GROUP BY 1",
            (after,),
        ).fetchall()
        conn.commit()
    return {r["node"]: r["n"] for r in rows}
