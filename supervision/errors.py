"""Typed errors of the runtime, and how they travel between processes as plain data.

Every error a caller can see is a subclass of `SupervisionError`. Errors cross process
boundaries as an `ErrorInfo` record (type path, message, simple fields and args, traceback
text, the actor), never as pickled exception objects: thespian wedges on exceptions that do not
unpickle (see THESPIAN_NOTES.md). `ErrorInfo.to_exception()` rebuilds the exception as its own
type on the caller's side (ours, builtins, any importable `Exception` subclass) without calling
the class's `__init__`, and falls back to `RemoteError` only for types it cannot import.

Classification (docs/design.md story 2):
- `Recoverable` and its subclasses are replied to the caller; the actor keeps running.
- anything else raised by a handler is a crash: the caller gets `ActorCrashed`, and the
  actor's supervisor restarts it.
"""

from __future__ import annotations

import importlib
import traceback as traceback_module
from typing import Any

import attrs

_SIMPLE = (str, int, float, bool, type(None))


class SupervisionError(Exception):
    """Base of every error raised by thespian-otp.

    Keyword fields are stored as attributes and travel with the error between processes.
    """

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        info = ErrorInfo.from_exception(self, with_traceback=False)
        return (_rebuild, (info,))

    @property
    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "message" and _is_simple(v)}


def _rebuild(info: "ErrorInfo") -> BaseException:
    return info.to_exception()


class SpecError(SupervisionError, ValueError):
    """A spec or an argument is invalid. `field` names what to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field, problem=problem)


class ConfigError(SupervisionError, ValueError):
    """The runtime's configuration is invalid (system base, port, addresses)."""


class NoSuchName(SupervisionError, LookupError):
    """Nothing is registered under `name` (never started, stopped, or between restarts)."""

    def __init__(self, name: str, hint: str = "", restarting: bool = False) -> None:
        text = f"no actor is registered under the name {name!r}"
        if hint:
            text += f"; {hint}"
        super().__init__(text, name=name, restarting=restarting)


class AlreadyRegistered(SupervisionError):
    """A living actor already holds `name`; names are never silently overwritten."""

    def __init__(self, name: str, holder: str = "") -> None:
        text = f"the name {name!r} is already registered"
        if holder:
            text += f" by {holder}"
        super().__init__(text + "; choose another name or stop the holder first", name=name)


class AlreadyPresent(AlreadyRegistered):
    """A supervisor already has a child spec named `name` (OTP's `already_present` /
    `already_started`): restart it with `restart_child`, or `delete_child` it first."""

    def __init__(self, name: str, supervisor: str, running: bool) -> None:
        state = "running" if running else "stopped, its spec kept"
        SupervisionError.__init__(
            self,
            f"{supervisor} already has a child named {name!r} ({state}); use restart_child, or delete_child first",
            name=name,
            supervisor=supervisor,
            running=running,
        )


class ChildRunning(SupervisionError):
    """`restart_child` / `delete_child` of a child that is running (OTP's `{error, running}`)."""

    def __init__(self, name: str, supervisor: str, status: str) -> None:
        super().__init__(
            f"{name!r} is {status} under {supervisor}; terminate_child it first", name=name, supervisor=supervisor, status=status
        )


class RuntimeExited(SupervisionError):
    """A tree started with `Runtime.start(spec, restart="transient"|"permanent")` exited and
    took the runtime down (as an OTP application of that type stops the node)."""

    def __init__(self, tree: str, reason: str, cause: str = "") -> None:
        text = f"the runtime stopped: tree {tree!r} exited ({reason})"
        if cause:
            text += f": {cause}"
        super().__init__(text, tree=tree, reason=reason, cause=cause)


class RuntimeLost(RuntimeExited):
    """A process of the runtime itself died (`process`: "kernel", or thespian's "admin") and
    took the actor system with it; the runtime killed what was left of it. Nothing is restarted:
    as OTP's kernel application is permanent and its exit stops the node."""

    def __init__(self, process: str, pid: int) -> None:
        text = f"the runtime stopped: its {process} process (pid {pid}) died; every process of its actor system was stopped"
        SupervisionError.__init__(self, text, tree=f"sys.{process}", reason="died", cause=text, process=process, pid=pid)


class AskTimeout(SupervisionError, TimeoutError):
    """No reply arrived within the caller's timeout."""

    def __init__(self, name: str, timeout: float, message_type: str = "") -> None:
        what = f" to {message_type}" if message_type else ""
        super().__init__(
            f"no reply from {name!r}{what} within {timeout:g} s; the actor is alive but slow, "
            "or the reply was lost; raise the timeout or check the actor",
            name=name,
            timeout=timeout,
            message_type=message_type,
        )


class SendTimeout(AskTimeout):
    """The actor did not even accept the message within the caller's timeout: its process is
    stopped (SIGSTOP), or busy in a handler without reading its socket. Nothing was replied."""

    def __init__(self, name: str, timeout: float, message_type: str = "") -> None:
        what = f" {message_type}" if message_type else " the message"
        SupervisionError.__init__(
            self,
            f"{name!r} did not accept{what} within {timeout:g} s (its process is stopped or busy "
            "without reading); it may still get it later; check the actor or raise the timeout",
            name=name,
            timeout=timeout,
            message_type=message_type,
        )


class DeadLetter(SupervisionError):
    """The message could not be handled because its target actor is dead.

    `undelivered` is True when the target certainly did not handle the message (it never
    arrived, or arrived after the actor crashed), so sending it again is safe."""

    def __init__(self, target: str, message_type: str, reason: str, undelivered: bool = False) -> None:
        super().__init__(
            f"{message_type} to {target!r} was not handled: {reason}",
            target=target,
            message_type=message_type,
            reason=reason,
            undelivered=undelivered,
        )


class ActorCrashed(SupervisionError):
    """The actor raised an unexpected error while handling the request; it is being restarted."""

    def __init__(self, actor: str, error_type: str, error_message: str, message_type: str = "") -> None:
        super().__init__(
            f"{actor!r} crashed handling {message_type or 'a request'}: {error_type}: {error_message}",
            actor=actor,
            error_type=error_type,
            error_message=error_message,
            message_type=message_type,
        )


class MessageNotPicklable(SupervisionError, TypeError):
    """The message cannot cross a process boundary (multiproc system bases pickle everything)."""

    def __init__(self, message_type: str, problem: str) -> None:
        super().__init__(
            f"{message_type} cannot be sent between processes: {problem}; use module-level, "
            "picklable classes (for example frozen attrs classes)",
            message_type=message_type,
            problem=problem,
        )


class StartFailed(SupervisionError):
    """A child (or a whole tree) could not be started."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"could not start {name!r}: {reason}", name=name, reason=reason)


class RuntimeNotRunning(SupervisionError):
    """The runtime is not started, already stopped, or its actor system died."""


class Recoverable(SupervisionError):
    """An error the actor recovers from: replied to the caller, no restart.

    Subclass it for bad input, unknown ids, wrong state. Subclasses may take any
    constructor arguments; only the message and simple attributes (str, int, float,
    bool, None) travel back to the caller.
    """

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message, **fields)


class UnknownMessage(Recoverable):
    """The actor does not handle messages of this type."""

    def __init__(self, actor: str, message_type: str) -> None:
        super().__init__(
            f"{actor!r} does not handle {message_type} messages",
            actor=actor,
            message_type=message_type,
        )


class BadRequest(Recoverable):
    """The request is malformed: a field is missing, of the wrong type, or out of range."""


class RemoteError(Recoverable):
    """An error raised by an actor whose type cannot be rebuilt here (not importable in this
    process, or not an `Exception`); `remote_type` is its "module:qualname"."""


class MessageNotUnpicklable(Recoverable, TypeError):
    """The request arrived but its payload does not unpickle in the actor's process (for example a
    class defined in `__main__` after the runtime started). The actor keeps running."""

    def __init__(self, message_type: str, problem: str) -> None:
        super().__init__(
            f"{message_type} cannot be unpickled in the actor's process: {problem}; define the "
            "class in an importable module (or before the runtime starts)",
            message_type=message_type,
            problem=problem,
        )


class SystemMessageRefused(Recoverable):
    """A message only the runtime may send (`Down`, `Answer`, registry, supervisor and lifecycle
    control) arrived as the payload of a caller's request: refused, nothing changed."""

    def __init__(self, actor: str, message_type: str) -> None:
        super().__init__(
            f"{actor!r} refused {message_type}: only the runtime sends it, never a caller; "
            "use the public API (Runtime, Server helpers, the actor's own messages) instead",
            actor=actor,
            message_type=message_type,
        )


class ReplyNotPicklable(Recoverable, TypeError):
    """The actor's reply cannot be pickled (a lock, a socket, a lambda...). The actor keeps running."""

    def __init__(self, value_type: str, problem: str) -> None:
        super().__init__(
            f"the reply ({value_type}) cannot be sent between processes: {problem}; reply with "
            "module-level, picklable values",
            value_type=value_type,
            problem=problem,
        )


class ReplyNotUnpicklable(SupervisionError, TypeError):
    """The actor's reply arrived but does not unpickle in the caller's process."""

    def __init__(self, value_type: str, problem: str) -> None:
        super().__init__(
            f"the reply ({value_type}) cannot be unpickled here: {problem}; its class must be "
            "importable in the caller's process",
            value_type=value_type,
            problem=problem,
        )


def _is_simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_simple(v) for v in value)
    return False


@attrs.frozen
class ErrorInfo:
    """An error as plain, always-picklable data.

    `args` are the exception's arguments when they are all simple values (so a builtin or a
    library exception is rebuilt with them); `actor` names the actor that raised or replied
    it; `cause` is the original error of an `ActorCrashed`."""

    type_path: str
    message: str
    fields: tuple[tuple[str, Any], ...] = ()
    traceback: str | None = None
    args: tuple | None = None
    actor: str | None = None
    cause: "ErrorInfo | None" = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, with_traceback: bool = True, actor: str | None = None, cause: "ErrorInfo | None" = None, _depth: int = 0) -> "ErrorInfo":
        kind = type(exc)
        if isinstance(exc, SupervisionError):
            message = exc.message
            fields = tuple(sorted((k, v) for k, v in exc.fields.items() if k not in _LOCAL_ATTRIBUTES))
        else:
            message = str(exc)
            fields = tuple(
                sorted(
                    (k, v)
                    for k, v in getattr(exc, "__dict__", {}).items()
                    if _is_simple(v) and not k.startswith("__") and k not in _LOCAL_ATTRIBUTES
                )
            )
        args = None if isinstance(exc, SupervisionError) or not _is_simple(tuple(exc.args)) else tuple(exc.args)
        text = None
        if with_traceback and exc.__traceback__ is not None:
            text = "".join(traceback_module.format_exception(exc))
        if cause is None and exc.__cause__ is not None and _depth < 3:
            cause = cls.from_exception(exc.__cause__, with_traceback=with_traceback, _depth=_depth + 1)
        if isinstance(getattr(exc, "remote_actor", None), str):
            actor = exc.remote_actor  # an error passed on: it still names the actor that raised it
        if text is None and isinstance(getattr(exc, "remote_traceback", None), str):
            text = exc.remote_traceback
        return cls(f"{kind.__module__}:{kind.__qualname__}", message, fields, text, args, actor, cause)

    @property
    def type_name(self) -> str:
        return self.type_path.rpartition(":")[2]

    def to_exception(self) -> BaseException:
        """Rebuild the exception as its own type (ours, a builtin, or any importable `Exception`
        subclass), without calling its `__init__`; `RemoteError` where it cannot be imported or
        rebuilt. The remote traceback text (`remote_traceback`, also a note shown in tracebacks)
        and the actor's name (`remote_actor`) are attached, as Pykka re-raises the real
        exception; an `ActorCrashed` gets the original error as its `__cause__`."""
        kind = _import_type(self.type_path)
        exc = self._rebuild(kind) if kind is not None and issubclass(kind, Exception) else None
        if exc is None:
            exc = RemoteError(f"{self.type_name}: {self.message}", remote_type=self.type_path)
        _attach(exc, "remote_actor", self.actor)
        if self.traceback:
            _attach(exc, "remote_traceback", self.traceback)
            where = f"in actor {self.actor!r}" if self.actor else "in another process"
            try:
                exc.add_note(f"raised {where}; its traceback there:\n{self.traceback.rstrip()}")
            except Exception:  # noqa: BLE001 - notes are a courtesy
                pass
        if self.cause is not None:
            exc.__cause__ = self.cause.to_exception()
        return exc

    def _rebuild(self, kind: type) -> BaseException | None:
        try:
            if issubclass(kind, SupervisionError):
                exc = kind.__new__(kind)
                Exception.__init__(exc, self.message)
                exc.message = self.message
            else:
                args = self.args if self.args is not None else (self.message,)
                try:
                    exc = kind.__new__(kind, *args)
                except TypeError:
                    exc = kind.__new__(kind)
                BaseException.__init__(exc, *args)
            for key, value in self.fields:
                _attach(exc, key, value)
            str(exc)  # a __str__ that needs what __init__ would have set: not rebuildable
        except Exception:  # noqa: BLE001 - any failure means: fall back to RemoteError
            return None
        return exc


#: attributes the rebuilding adds on the caller's side: never sent on again as fields
_LOCAL_ATTRIBUTES = frozenset({"remote_actor", "remote_traceback"})


def _attach(exc: BaseException, key: str, value: Any) -> None:
    try:
        setattr(exc, key, value)
    except (AttributeError, TypeError):
        pass


def _import_type(path: str) -> type | None:
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:
        return None
    return target if isinstance(target, type) else None


def is_recoverable(exc: BaseException) -> bool:
    return isinstance(exc, Recoverable)


class UnsafeState(ConfigError):
    """A discovery record or its directory could be written by another user: it is never read."""
