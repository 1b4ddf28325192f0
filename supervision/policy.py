"""Pure restart decisions: a child exited with a reason; which children to stop, which to start, or give up.

`decide` is a plain function of (strategy, children, exited child, reason, restart window, now),
as in OTP's supervisor.erl; the supervisor actor only executes what it returns. No actor system
is involved, so property tests can drive it directly.

Semantics follow OTP:
- permanent children are always restarted; transient ones only after an abnormal exit;
  temporary ones never.
- one_for_one / simple_one_for_one restart the exited child alone.
- one_for_all stops every other running child (in reverse start order), then starts all
  children in start order.
- rest_for_one stops the running children started after the exited one (in reverse order),
  then starts the exited child and those after it, in order.
- temporary siblings that are stopped by a one_for_all / rest_for_one restart are removed,
  not restarted.
- each restart is recorded in the window first; if the window is exceeded the supervisor
  escalates: it stops all its running children in reverse start order and exits.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import attrs

from supervision.intensity import RestartWindow

#: Exit reasons that are not failures.
NORMAL_REASONS = frozenset({"normal", "shutdown"})


def is_normal(reason: Any) -> bool:
    """normal, shutdown and OTP's `{shutdown, Detail}` (here the tuple `("shutdown", detail)`)."""
    if isinstance(reason, tuple):
        return len(reason) == 2 and reason[0] == "shutdown"
    return reason in NORMAL_REASONS


def format_reason(reason: Any) -> str:
    """An exit reason as text: `("shutdown", "x")` reads "shutdown: x"."""
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown":
        return f"shutdown: {reason[1]}"
    return str(reason)


@attrs.frozen
class ChildView:
    """What the policy needs to know about one child, in start order."""

    name: str
    restart: str
    running: bool


@attrs.frozen
class Ignore:
    """The exit is not one the supervisor needs to act on (unknown child, already handled)."""

    why: str


@attrs.frozen
class Exited:
    """The child stays down. `remove` drops it from the supervisor (temporary/dynamic children)."""

    name: str
    remove: bool


@attrs.frozen
class Restart:
    """A decision of `policy.decide`: stop these children (in this order), start these, and remove
    these specs."""

    stop: tuple[str, ...]
    start: tuple[str, ...]
    remove: tuple[str, ...] = ()


@attrs.frozen
class Escalate:
    """Too many restarts: stop `stop` in this order, then the supervisor exits."""

    stop: tuple[str, ...]
    reason: str


Decision = Union[Ignore, Exited, Restart, Escalate]


def should_restart(restart: str, reason: str) -> bool:
    if restart == "permanent":
        return True
    if restart == "transient":
        return not is_normal(reason)
    return False


def decide(
    strategy: str,
    children: Sequence[ChildView],
    exited: str,
    reason: str,
    window: RestartWindow,
    now: float,
) -> tuple[Decision, RestartWindow]:
    """Decide what to do after `exited` stopped with `reason`. Returns the decision and the new window."""
    names = [child.name for child in children]
    if exited not in names:
        return Ignore(f"{exited!r} is not a child"), window
    index = names.index(exited)
    child = children[index]
    if not child.running:
        return Ignore(f"{exited!r} is not running"), window

    if not should_restart(child.restart, reason):
        remove = child.restart == "temporary" or strategy == "simple_one_for_one"
        return Exited(exited, remove=remove), window

    window = window.record(now)
    if window.exceeded:
        others = [c.name for c in children if c.running and c.name != exited]
        return (
            Escalate(
                stop=tuple(reversed(others)),
                reason=f"reached max restart intensity ({window.intensity} in {window.period:g} s)",
            ),
            window,
        )

    if strategy in ("one_for_one", "simple_one_for_one"):
        return Restart(stop=(), start=(exited,)), window

    if strategy == "one_for_all":
        affected = [c for c in children if c.name != exited]
        before_start = list(children)
    elif strategy == "rest_for_one":
        affected = list(children[index + 1 :])
        before_start = list(children[index:])
    else:
        raise ValueError(f"unknown strategy {strategy!r}")

    stop = tuple(c.name for c in reversed(affected) if c.running)
    remove = tuple(c.name for c in affected if c.restart == "temporary")
    start = tuple(c.name for c in before_start if c.name not in remove)
    return Restart(stop=stop, start=start, remove=remove), window
