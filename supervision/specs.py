"""Frozen, validated specifications of supervision trees: what to start, how to restart it, how to stop it.

A `ChildSpec` describes one worker actor; a `SupervisorSpec` describes a supervisor and its
children, and is itself a valid child, so trees nest. Every field is checked where the spec is
written: an invalid spec raises `SpecError` naming the field (`ChildSpec(name='x').restart: ...`).
"""

from __future__ import annotations

import importlib
import math
import random
import re
from typing import Any, Iterator, Union

import attrs

from supervision.errors import SpecError
from supervision.process import Process

RESTART_TYPES = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
BRUTAL_KILL = "brutal_kill"
#: A supervisor child's `shutdown`: its parent never kills it, it stops its own children
#: (each bounded by its own budget) and exits (OTP's `infinity`).
INFINITY = "infinity"
AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")
#: The runtime's own names.
KERNEL_NAME = "sys.kernel"
MONITOR_NAME = "sys.monitor"
#: Names are registered cluster-wide; they are also used in logs and the CLI.
#: `\Z`, not `$`: `$` also matches before a trailing newline, which let "echo\n" through.
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.:@/\-]{0,127}\Z")
#: Names under this prefix belong to the runtime itself.
SYSTEM_PREFIX = "sys."
#: Extra seconds a supervisor allows on top of its children's budgets, and the grace
#: after a hard kill for the process to be gone.
SUPERVISOR_MARGIN = 1.0
KILL_GRACE = 1.0


def _fail(owner: str, field: str, problem: str) -> SpecError:
    return SpecError(f"{owner}.{field}", problem)


def _owner(instance: Any) -> str:
    name = getattr(instance, "name", None)
    return f"{type(instance).__name__}(name={name!r})"


def validate_name(value: Any, field: str = "name") -> str:
    """Check a registered name; return it or raise `SpecError` naming `field`."""
    if not isinstance(value, str):
        raise SpecError(field, f"must be a string, got {type(value).__name__}")
    if not NAME_PATTERN.fullmatch(value):
        raise SpecError(
            field,
            f"{value!r} is not a valid name: use 1-128 characters from letters, digits "
            "and _ . : @ / -, starting with a letter, digit or _",
        )
    return value


def validate_node(value: Any, field: str = "node") -> str | None:
    """Check an optional node name: None (the component picks its default, e.g. the host name)
    or a valid name (see `validate_name`). A node name is written into process rows,
    completion events, PostgreSQL's application_name and the tree and observer output, so a
    control character or an escape sequence in it would reach every terminal that shows them."""
    return None if value is None else validate_name(value, field)


def _check_name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    try:
        validate_name(value)
    except SpecError as exc:
        raise _fail(type(instance).__name__, attribute.name, exc.problem) from None


def _check_restart(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in RESTART_TYPES:
        raise _fail(_owner(instance), attribute.name, f"must be one of {', '.join(RESTART_TYPES)}; got {value!r}")


def _check_seconds(instance: Any, attribute: attrs.Attribute, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise _fail(_owner(instance), attribute.name, f"must be a finite number of seconds; got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise _fail(_owner(instance), attribute.name, f"must be {bound} seconds; got {value!r}")


def _check_positive_seconds(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    _check_seconds(instance, attribute, value, positive=True)


def _check_shutdown(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value == BRUTAL_KILL:
        return
    if value == INFINITY:
        raise _fail(
            _owner(instance),
            attribute.name,
            f"{INFINITY!r} is for supervisors only (SupervisorSpec.shutdown): a worker that may never stop "
            "would make Runtime.stop() unbounded; give it seconds",
        )
    if isinstance(value, str):
        raise _fail(_owner(instance), attribute.name, f"must be seconds (>= 0) or {BRUTAL_KILL!r}; got {value!r}")
    _check_seconds(instance, attribute, value)


def _check_significant(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(_owner(instance), attribute.name, f"must be True or False; got {value!r}")
    if value and instance.restart == "permanent":
        raise _fail(
            _owner(instance),
            attribute.name,
            "a permanent child cannot be significant (it is always restarted, so it never ends its supervisor); "
            "use restart='transient' or 'temporary'",
        )


def resolve_actor_class(value: Any) -> type:
    """Accept a class or a 'module:Class' / 'module.Class' path; return the class."""
    if isinstance(value, str):
        module_name, sep, qualname = value.partition(":")
        if not sep:
            module_name, _, qualname = value.rpartition(".")
        if not module_name or not qualname:
            raise ValueError(f"{value!r} is not an import path like 'package.module:ClassName'")
        try:
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {value!r}: {exc}") from None
        value = target
    if not isinstance(value, type):
        raise ValueError(f"must be a class or an import path, got {type(value).__name__}")
    return value


def _convert_actor(value: Any) -> Any:
    try:
        return resolve_actor_class(value)
    except ValueError:
        return value  # the validator reports it with the field name


def _check_actor(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    try:
        cls = resolve_actor_class(value)
    except ValueError as exc:
        raise _fail(_owner(instance), attribute.name, str(exc)) from None
    if not issubclass(cls, Process) or cls.supervisor_class:
        raise _fail(
            _owner(instance),
            attribute.name,
            f"{cls.__qualname__} must be a subclass of supervision.Server (supervisors are SupervisorSpec)",
        )


def _to_tuple(value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _check_args(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple):
        raise _fail(_owner(instance), attribute.name, f"must be a tuple or list; got {type(value).__name__}")


def _check_kwargs(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(_owner(instance), attribute.name, "must be a dict with string keys")


@attrs.frozen
class Backoff:
    """Delay before a restart: the first restart in a window is immediate, later ones wait
    `min * 2**(k-2)` seconds (k = restarts in the current window), capped at `max`, spread by
    +/- `jitter` (a fraction) so that siblings do not restart in lockstep."""

    min: float = attrs.field(default=0.05, validator=_check_seconds)
    max: float = attrs.field(default=2.0, validator=_check_seconds)
    jitter: float = attrs.field(default=0.2)

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise _fail("Backoff", "jitter", f"must be a fraction between 0 and 1; got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.max < self.min:
            raise _fail("Backoff", "max", f"must be >= min ({self.min}); got {self.max}")

    def delay(self, restarts_in_window: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the restart that makes `restarts_in_window` restarts."""
        if restarts_in_window <= 1 or self.min == 0:
            return 0.0
        base = min(self.max, self.min * 2 ** (restarts_in_window - 2))
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            base = min(self.max, max(0.0, base * (1 + spread)))
        return base


@attrs.frozen(eq=True, hash=False)
class ChildSpec:
    """A worker actor (a `supervision.Server` subclass) supervised under `name`.

    - `restart`: permanent (always restarted), transient (restarted only after an abnormal
      exit), temporary (never restarted).
    - `shutdown`: seconds the child gets to stop after being asked, then it is killed;
      or "brutal_kill" to kill it at once.
    - `start_timeout`: seconds its `init` may take before the start counts as failed.
    """

    name: str = attrs.field(validator=_check_name)
    actor: type = attrs.field(converter=_convert_actor, validator=_check_actor)
    args: tuple = attrs.field(default=(), converter=_to_tuple, validator=_check_args)
    kwargs: dict = attrs.field(factory=dict, validator=_check_kwargs)
    restart: str = attrs.field(default="permanent", validator=_check_restart)
    shutdown: Union[float, str] = attrs.field(default=5.0, validator=_check_shutdown)
    start_timeout: float = attrs.field(default=10.0, validator=_check_positive_seconds)
    #: OTP 24's significant children: with the parent's `auto_shutdown`, its own exit (not
    #: restarted) ends the parent too. Only transient or temporary children.
    significant: bool = attrs.field(default=False, validator=_check_significant, kw_only=True)

    @property
    def kind(self) -> str:
        return "worker"

    @property
    def stop_timeout(self) -> float:
        """Seconds the child gets to stop after being asked, before it is killed."""
        return 0.0 if self.shutdown == BRUTAL_KILL else float(self.shutdown)

    @property
    def shutdown_budget(self) -> float:
        """The longest a stop of this child can take: its timeout, then the kill."""
        return self.stop_timeout + KILL_GRACE

    def with_name(self, name: str) -> "ChildSpec":
        return attrs.evolve(self, name=name)

    def walk(self) -> Iterator[tuple[str, "ChildSpec | SupervisorSpec"]]:
        yield self.name, self


def _check_strategy(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in STRATEGIES:
        raise _fail(_owner(instance), attribute.name, f"must be one of {', '.join(STRATEGIES)}; got {value!r}")


def _check_intensity(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(_owner(instance), attribute.name, f"must be an integer >= 0 (restarts per period); got {value!r}")


def _check_backoff(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, Backoff):
        raise _fail(_owner(instance), attribute.name, f"must be a Backoff; got {type(value).__name__}")


def _check_optional_shutdown(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value != INFINITY:
        _check_shutdown(instance, attribute, value)


def _check_auto_shutdown(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in AUTO_SHUTDOWNS:
        raise _fail(_owner(instance), attribute.name, f"must be one of {', '.join(AUTO_SHUTDOWNS)}; got {value!r}")


@attrs.frozen(eq=True, hash=False)
class SupervisorSpec:
    """A supervisor and its children, started in order and stopped in reverse order.

    - `strategy`: one_for_one (restart the child that exited), one_for_all (restart all),
      rest_for_one (restart the child and those started after it), simple_one_for_one
      (one child template; children are added at run time with `start_child`).
    - `intensity`/`period`: more than `intensity` restarts within `period` seconds and the
      supervisor gives up: it stops its children and exits, and its parent decides.
    - `backoff`: delay before restarts (see `Backoff`).
    - `shutdown`: None (default) gives the supervisor the sum of its children's budgets
      (children added at run time included); "infinity": its parent never kills it (it stops
      its children, each within its own budget); or seconds.
    - `auto_shutdown` (OTP 24): never (default); any_significant: the supervisor stops when a
      significant child exits on its own and is not restarted; all_significant: when the last
      running significant child does.
    - `start_children`: simple_one_for_one only: how many children to start from the
      template when the supervisor starts (named `<template>-1`, ...).
    """

    name: str = attrs.field(validator=_check_name)
    strategy: str = attrs.field(default="one_for_one", validator=_check_strategy)
    intensity: int = attrs.field(default=3, validator=_check_intensity)
    period: float = attrs.field(default=5.0, validator=_check_positive_seconds)
    backoff: Backoff = attrs.field(factory=Backoff, validator=_check_backoff)
    children: tuple = attrs.field(default=(), converter=_to_tuple)
    restart: str = attrs.field(default="permanent", validator=_check_restart)
    shutdown: Union[float, str, None] = attrs.field(default=None, validator=_check_optional_shutdown)
    start_timeout: float = attrs.field(default=60.0, validator=_check_positive_seconds)
    significant: bool = attrs.field(default=False, validator=_check_significant, kw_only=True)
    auto_shutdown: str = attrs.field(default="never", validator=_check_auto_shutdown, kw_only=True)
    start_children: int = attrs.field(default=0, kw_only=True)

    @start_children.validator
    def _check_start_children(self, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(_owner(self), "start_children", f"must be an integer >= 0; got {value!r}")
        if value and self.strategy != "simple_one_for_one":
            raise _fail(_owner(self), "start_children", "only a simple_one_for_one supervisor starts children from a template")

    @children.validator
    def _check_children(self, attribute: attrs.Attribute, value: Any) -> None:
        owner = _owner(self)
        if not isinstance(value, tuple):
            raise _fail(owner, "children", f"must be a list of ChildSpec/SupervisorSpec; got {type(value).__name__}")
        for index, child in enumerate(value):
            if not isinstance(child, (ChildSpec, SupervisorSpec)):
                raise _fail(owner, f"children[{index}]", f"must be a ChildSpec or SupervisorSpec; got {type(child).__name__}")
        if self.strategy == "simple_one_for_one" and len(value) != 1:
            raise _fail(
                owner,
                "children",
                f"a simple_one_for_one supervisor takes exactly one child spec (the template); got {len(value)}",
            )
        seen: dict[str, str] = {self.name: self.name}
        for path, spec in self._walk_paths(self.name):
            if spec.name in seen:
                raise _fail(
                    owner, "children", f"duplicate name {spec.name!r} (at {seen[spec.name]} and {path}); names are unique in a tree"
                )
            seen[spec.name] = path
        significant = [child.name for child in value if child.significant]
        if significant and self.auto_shutdown == "never":
            raise _fail(
                owner,
                "children",
                f"{', '.join(significant)} {'is' if len(significant) == 1 else 'are'} significant, which needs "
                "auto_shutdown='any_significant' or 'all_significant' (OTP rejects it with auto_shutdown=never)",
            )

    def _walk_paths(self, prefix: str) -> Iterator[tuple[str, Any]]:
        for child in self.children:
            path = f"{prefix}/{child.name}"
            yield path, child
            if isinstance(child, SupervisorSpec):
                yield from child._walk_paths(path)

    @property
    def kind(self) -> str:
        return "supervisor"

    @property
    def template(self) -> ChildSpec | None:
        """The child template of a simple_one_for_one supervisor."""
        return self.children[0] if self.strategy == "simple_one_for_one" else None

    @property
    def stop_timeout(self) -> float:
        """Seconds the supervisor gets to stop its children and exit, before it is killed."""
        if self.shutdown == BRUTAL_KILL:
            return 0.0
        if self.shutdown is not None and self.shutdown != INFINITY:
            return float(self.shutdown)
        if self.strategy == "simple_one_for_one":
            # dynamic children are stopped together, as OTP does
            return self.children[0].shutdown_budget + SUPERVISOR_MARGIN
        return sum(child.shutdown_budget for child in self.children) + SUPERVISOR_MARGIN

    @property
    def shutdown_budget(self) -> float:
        return self.stop_timeout + KILL_GRACE

    def with_name(self, name: str) -> "SupervisorSpec":
        return attrs.evolve(self, name=name)

    def walk(self) -> Iterator[tuple[str, "ChildSpec | SupervisorSpec"]]:
        """Every spec of the tree, this one first, with its name."""
        yield self.name, self
        for child in self.children:
            if self.strategy == "simple_one_for_one":
                continue  # the template is not a running child
            yield from child.walk()


Spec = Union[ChildSpec, SupervisorSpec]
