"""The job system's pure parts: validating new jobs, retry backoff, batching outcomes, and
fanning finished jobs out to subscribers through bounded buffers."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import re
import traceback
from collections import deque
from typing import Any, Iterable

import attrs

from actors.jobs.errors import BadJob
from actors.jobs.messages import FinishedJob, JobsFinished
from actors.jobs.registry import check_kind
from actors.stores.rows import JobOutcome, NewJob
from supervision.errors import SpecError

#: used with fullmatch: `re.match(...$)` would accept a trailing newline ("default\n")
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}")
MAX_PRIORITY = 2**31 - 1
MAX_ATTEMPTS = 1000
#: The largest payload one job may carry, as UTF-8 JSON. Checked before anything is sent: a
#: 100 MB payload took 9.6 s to reach the table, long after the caller's ask had timed out,
#: so a retry stored it twice. Big data belongs in a table or a blob store; pass its key.
MAX_PAYLOAD_BYTES = 1_000_000
#: The most payload bytes one `Enqueue` may carry (what one INSERT handles in about a second).
MAX_ENQUEUE_BYTES = 16_000_000
#: The most nested containers in a payload (deeper ones make json and PostgreSQL recurse).
MAX_PAYLOAD_DEPTH = 100


def check_payload(kind: Any, payload: Any, max_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """Raise `BadJob` unless PostgreSQL's jsonb accepts `payload` as is; return its size in
    bytes. jsonb refuses what JSON allows: the character U+0000 and lone surrogates (both
    crashed the jobs service when they reached the INSERT), NaN and infinities."""
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise BadJob(f"payload of {kind!r}: a string holds the character U+0000 (\\x00), which PostgreSQL cannot store")
        elif isinstance(value, (dict, list, tuple)):
            if depth >= MAX_PAYLOAD_DEPTH:
                raise BadJob(f"payload of {kind!r} nests containers deeper than {MAX_PAYLOAD_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BadJob(f"payload of {kind!r} is not JSON-serializable: {exc}") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise BadJob(
            f"payload of {kind!r} holds a lone surrogate ({text[exc.start]!r}), which is not valid UTF-8 and PostgreSQL refuses"
        ) from None
    if size > max_bytes:
        raise BadJob(
            f"payload of {kind!r} is {size:,} bytes of JSON; the limit is {max_bytes:,} "
            "(store big data elsewhere and pass its key)"
        )
    return size


def prepare(
    kind: Any,
    payload: Any = None,
    *,
    queue: Any = "default",
    priority: Any = 0,
    run_at: Any = None,
    max_attempts: Any = 5,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> NewJob:
    """Validate one job; raise `BadJob` naming the field. Nothing is stored for a bad job."""
    check_kind(kind)
    payload = {} if payload is None else payload
    size = check_payload(kind, payload, max_payload_bytes)
    if not isinstance(queue, str) or not QUEUE_PATTERN.fullmatch(queue):
        raise BadJob(f"queue: {queue!r} is not a valid queue name (1-64 letters, digits and _ . : -)")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise BadJob(f"priority: must be an integer from 0 (default) up; higher runs first; got {priority!r}")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise BadJob(f"run_at: must be a datetime or None; got {type(run_at).__name__}")
        if run_at.tzinfo is None:
            raise BadJob("run_at: must be timezone-aware (for example datetime.now(timezone.utc) + timedelta(...))")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise BadJob(f"max_attempts: must be an integer from 1 to {MAX_ATTEMPTS}; got {max_attempts!r}")
    return NewJob(kind, payload, queue, priority, run_at, max_attempts, size=size)


#: The shortest heartbeat ttl: beats come every ttl / 3.5 s (0.29 s at 1 s), and under that one
#: slow round trip (a checkpoint, a busy server) lets a healthy worker's lease run out.
MIN_HEARTBEAT_TTL = 1.0


def check_timing(heartbeat_ttl: Any, rescue_interval: Any, *, cancel_grace: Any = 5.0, kill_grace: Any = 5.0) -> float:
    """Validate the liveness settings together; return the rescue interval to use.

    A job's `timeout` does not interact with them: liveness comes from each worker's heartbeat
    thread, not from its handlers returning, so a job may run far longer than the ttl. What
    can still end a healthy job is refused here: a ttl too short to absorb one slow beat, and
    a rescue interval longer than the ttl (a dead worker's jobs would wait more than twice
    the ttl, and the rescuer's wait after a database outage, one ttl, would be skipped)."""
    for field, value in (("heartbeat_ttl", heartbeat_ttl), ("cancel_grace", cancel_grace), ("kill_grace", kill_grace)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SpecError(field, f"must be a positive number of seconds; got {value!r}")
    if heartbeat_ttl < MIN_HEARTBEAT_TTL:
        raise SpecError(
            "heartbeat_ttl",
            f"{heartbeat_ttl:g} s is below {MIN_HEARTBEAT_TTL:g} s: one slow heartbeat would let a healthy worker's jobs be rescued",
        )
    if rescue_interval is None:
        return max(0.2, heartbeat_ttl / 3)
    if isinstance(rescue_interval, bool) or not isinstance(rescue_interval, (int, float)) or not 0 < rescue_interval <= heartbeat_ttl:
        raise SpecError(
            "rescue_interval",
            f"must be a number of seconds above 0 and at most heartbeat_ttl ({heartbeat_ttl:g} s); got {rescue_interval!r}",
        )
    return float(rescue_interval)


#: `orphan_after="auto"`: this many seconds, or more for a tree with long leases
ORPHAN_AFTER_FLOOR = 600.0
#: ... at least this many of the tree's own (heartbeat ttl + rescue interval)
ORPHAN_AFTER_LEASES = 4


def check_orphan_after(orphan_after: Any, heartbeat_ttl: float, rescue_interval: float) -> float | None:
    """`orphan_after`: seconds a process of another job tree stays expired before this tree's
    rescuer takes it; None: never; "auto": `ORPHAN_AFTER_FLOOR`, or 4 of this tree's ttl +
    rescue interval if that is longer. A number must exceed this tree's ttl and rescue interval
    together (and another tree's process is only taken past 4 of its own leases anyway)."""
    if orphan_after is None:
        return None
    floor = heartbeat_ttl + rescue_interval
    if orphan_after == "auto":
        return max(ORPHAN_AFTER_FLOOR, ORPHAN_AFTER_LEASES * floor)
    if isinstance(orphan_after, bool) or not isinstance(orphan_after, (int, float)) or not math.isfinite(orphan_after) or orphan_after <= floor:
        raise SpecError(
            "orphan_after",
            f'must be "auto", None or a number of seconds above heartbeat_ttl + rescue_interval ({floor:g} s); got {orphan_after!r}',
        )
    return float(orphan_after)


_OUTCOME_STATUSES = ("completed", "failed", "deferred")


def check_outcome(outcome: Any) -> JobOutcome:
    """A `JobOutcome` from the wire, checked field by field (raise `BadJob`)."""
    if not isinstance(outcome, JobOutcome):
        raise BadJob(f"Complete.outcomes holds a {type(outcome).__name__}, not a JobOutcome")
    ints = {"job_id": outcome.job_id, "process": outcome.process, "attempt": outcome.attempt}
    for field, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise BadJob(f"JobOutcome.{field} must be a non-negative integer; got {value!r}")
    if outcome.status not in _OUTCOME_STATUSES:
        raise BadJob(f"JobOutcome.status must be one of {', '.join(_OUTCOME_STATUSES)}; got {outcome.status!r}")
    for field in ("finished_at", "run_ms", "retry_in"):
        value = getattr(outcome, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise BadJob(f"JobOutcome.{field} must be a finite number >= 0; got {value!r}")
    if outcome.error is not None and not isinstance(outcome.error, str):
        raise BadJob("JobOutcome.error must be a string or None")
    if not isinstance(outcome.discard, bool):
        raise BadJob("JobOutcome.discard must be a bool")
    if outcome.error is not None and storable_text(outcome.error) != outcome.error:
        outcome = attrs.evolve(outcome, error=storable_text(outcome.error))
    if outcome.traceback is not None:
        if not isinstance(outcome.traceback, str):
            raise BadJob("JobOutcome.traceback must be a string or None")
        if tail_text(outcome.traceback) != outcome.traceback:
            outcome = attrs.evolve(outcome, traceback=tail_text(outcome.traceback))
    return outcome


def storable_text(text: str, limit: int = 10_000) -> str:
    """`text` as PostgreSQL's text type stores it: no U+0000, no lone surrogates, at most
    `limit` characters (a handler's error message is data from anywhere)."""
    cleaned = text.replace("\x00", "\\x00")
    if len(cleaned) > limit:
        cleaned = cleaned[:limit] + f"... ({len(text) - limit:,} more characters)"
    return cleaned.encode("utf-8", "backslashreplace").decode("utf-8")


#: The most characters of a handler's traceback kept with a failed attempt: the end is kept
#: (the innermost frames and the exception), enough for ~40 frames of 100 characters.
MAX_TRACEBACK = 4096


def _storable(text: str) -> str:
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def tail_text(text: str, limit: int = MAX_TRACEBACK) -> str:
    """`text` made storable (see `storable_text`) and cut to its last `limit` (>= 100)
    characters at most, from a line start where there is one, saying how much was left out."""
    cleaned = _storable(text)
    if len(cleaned) <= limit:
        return cleaned
    tail = cleaned[len(cleaned) - (limit - 60):]  # 60: room for the note below
    newline = tail.find("\n")
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1:]
    return f"[{len(cleaned) - len(tail):,} earlier characters left out]\n" + tail


def exception_message(exc: BaseException) -> str:
    """str(exc), or a note when its __str__ itself raises (that used to crash the worker)."""
    try:
        return str(exc)
    except Exception as failed:  # noqa: BLE001 - a handler's exception is code from anywhere
        return f"<str() of the exception failed: {type(failed).__name__}>"


def traceback_text(exc: BaseException, limit: int = MAX_TRACEBACK, skip: int = 0) -> str:
    """The traceback of `exc` (chained exceptions included) as stored with a failed attempt:
    storable, its last `limit` characters at most; `skip` outer frames left out (the
    worker's own). Never raises: an exception whose str() fails still gets its frames."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception as failed:  # noqa: BLE001 - format_exception guards str(); this is belt and braces
        text = f"(the traceback could not be formatted: {type(failed).__name__})"
    return tail_text(text, limit)


def retry_delay(attempt: int, retry_min: float, retry_max: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempt + 1`: exponential from `retry_min`, capped, +/-20% jitter."""
    base = min(retry_max, retry_min * 2 ** max(0, attempt - 1))
    return max(0.0, base * (rng or random).uniform(0.8, 1.2))


@attrs.define
class OutcomeBatch:
    """Outcomes waiting to be written; due when `size` are waiting or the oldest is `max_age` old."""

    size: int = 100
    max_age: float = 0.02
    outcomes: list[JobOutcome] = attrs.field(factory=list)
    waiters: list[Any] = attrs.field(factory=list)
    oldest: float | None = None

    def add(self, outcomes: Iterable[JobOutcome], now: float, waiter: Any = None) -> None:
        items = list(outcomes)
        if not items:
            return
        if self.oldest is None:
            self.oldest = now
        self.outcomes.extend(items)
        if waiter is not None:
            self.waiters.append(waiter)

    def due(self, now: float) -> bool:
        return bool(self.outcomes) and (len(self.outcomes) >= self.size or now - (self.oldest or now) >= self.max_age)

    def deadline(self) -> float | None:
        return None if self.oldest is None else self.oldest + self.max_age

    def take(self) -> tuple[list[JobOutcome], list[Any]]:
        outcomes, waiters = self.outcomes, self.waiters
        self.outcomes, self.waiters, self.oldest = [], [], None
        return outcomes, waiters

    def put_back(self, outcomes: list[JobOutcome], waiters: list[Any], now: float) -> None:
        """A write that failed (the database is away): its outcomes wait again, first in line;
        an outcome already waiting again (a worker resent it) is kept once."""
        waiting = set(self.outcomes)
        self.outcomes = [o for o in outcomes if o not in waiting] + self.outcomes
        self.waiters = list(waiters) + self.waiters
        self.oldest = now if self.oldest is None else min(self.oldest, now)


@attrs.define
class _Subscriber:
    name: str
    buffer: int
    window: int
    permanent: bool = False
    queue: deque = attrs.field(factory=deque)
    in_flight: dict[int, int] = attrs.field(factory=dict)
    dropped: int = 0
    delivered: int = 0


class Fanout:
    """Finished jobs to subscribers, never blocking the publisher.

    Each subscriber has at most `window` unacknowledged deliveries and at most `buffer` jobs
    waiting; past that the oldest waiting jobs are dropped (and the next delivery says how many)."""

    def __init__(self, batch: int = 500) -> None:
        self.subscribers: dict[str, _Subscriber] = {}
        self.batch = batch
        self._seq = 0

    def subscribe(self, name: str, buffer: int, window: int, permanent: bool = False) -> None:
        if isinstance(buffer, bool) or not isinstance(buffer, int) or not isinstance(window, int) or buffer < 1 or window < 1:
            raise BadJob("Subscribe: buffer and window must be integers >= 1")
        self.subscribers[name] = _Subscriber(name, buffer, window, permanent)

    def down(self, name: str) -> bool:
        """The subscriber died: a dynamic one is removed; a permanent one (configured in the
        completer) keeps its buffer, and its unacknowledged deliveries count as lost.
        Returns True if it was removed."""
        sub = self.subscribers.get(name)
        if sub is None:
            return False
        if sub.permanent:
            sub.dropped += sum(sub.in_flight.values())
            sub.in_flight.clear()
            return False
        del self.subscribers[name]
        return True

    def remove(self, name: str) -> bool:
        return self.subscribers.pop(name, None) is not None

    def publish(self, jobs: Iterable[FinishedJob]) -> list[tuple[str, JobsFinished]]:
        items = list(jobs)
        for sub in self.subscribers.values():
            sub.queue.extend(items)
            overflow = len(sub.queue) - sub.buffer
            for _ in range(max(0, overflow)):
                sub.queue.popleft()
                sub.dropped += 1
        return self._deliveries()

    def ack(self, name: str, seq: int) -> list[tuple[str, JobsFinished]]:
        sub = self.subscribers.get(name)
        if sub is not None:
            sub.in_flight.pop(seq, None)
        return self._deliveries()

    def _deliveries(self) -> list[tuple[str, JobsFinished]]:
        out = []
        for sub in self.subscribers.values():
            while sub.queue and len(sub.in_flight) < sub.window:
                chunk = tuple(sub.queue.popleft() for _ in range(min(self.batch, len(sub.queue))))
                self._seq += 1
                sub.in_flight[self._seq] = len(chunk)
                sub.delivered += len(chunk)
                out.append((sub.name, JobsFinished(self._seq, chunk, sub.dropped)))
                sub.dropped = 0
        return out

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            s.name: {"waiting": len(s.queue), "in_flight": len(s.in_flight), "delivered": s.delivered, "dropped": s.dropped}
            for s in self.subscribers.values()
        }
