"""Typed errors of the runtime, and how they travel between processes as plain data.

Every error a caller can see is a subclass of `SupervisionError`. Errors cross process
boundaries as an `ErrorInfo` record (type path, message, simple fields, traceback text),
never as pickled exception objects: thespian wedges on exceptions that do not unpickle
(see THESPIAN_NOTES.md). `ErrorInfo.to_exception()` rebuilds the typed exception on the
caller's side without calling the class's `__init__`.

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
    """A `Recoverable` raised by an actor whose class cannot be rebuilt here (not importable)."""


def _is_simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_simple(v) for v in value)
    return False


@attrs.frozen
class ErrorInfo:
    """An error as plain, always-picklable data."""

    type_path: str
    message: str
    fields: tuple[tuple[str, Any], ...] = ()
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, with_traceback: bool = True) -> "ErrorInfo":
        kind = type(exc)
        if isinstance(exc, SupervisionError):
            message = exc.message
            fields = tuple(sorted(exc.fields.items()))
        else:
            message = str(exc)
            fields = tuple(
                sorted((k, v) for k, v in getattr(exc, "__dict__", {}).items() if _is_simple(v))
            )
        text = None
        if with_traceback and exc.__traceback__ is not None:
            text = "".join(traceback_module.format_exception(exc))
        return cls(f"{kind.__module__}:{kind.__qualname__}", message, fields, text)

    @property
    def type_name(self) -> str:
        return self.type_path.rpartition(":")[2]

    def to_exception(self) -> BaseException:
        """Rebuild the typed exception; types that are not ours become `RemoteError`."""
        kind = _import_type(self.type_path)
        if kind is None or not issubclass(kind, SupervisionError):
            exc: BaseException = RemoteError(f"{self.type_name}: {self.message}")
            exc.remote_type = self.type_path  # type: ignore[attr-defined]
            return exc
        exc = kind.__new__(kind)
        Exception.__init__(exc, self.message)
        exc.message = self.message
        for key, value in self.fields:
            try:
                setattr(exc, key, value)
            except AttributeError:
                pass
        if self.traceback:
            exc.remote_traceback = self.traceback  # type: ignore[attr-defined]
        return exc


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
