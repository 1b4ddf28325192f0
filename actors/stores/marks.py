"""A worker's job marks without a round trip per job: libpq pipeline mode on a connection of
their own (issue 21, second round).

Issue 19's `mark` ("the previous job ended, this one starts") is one statement per job. Sent
synchronously, its round trip capped a worker near 1,000 no-op jobs/s. Here each mark is sent
with its own Sync (its own implicit transaction, committed by the server as soon as it gets
there) and flushed to the socket before the handler starts; its result ("was this job still
mine?") is read later, before the job's outcome is handed on.

What the server has when the worker dies right after a send (`os._exit`, a segfault, SIGKILL):
the bytes were written to the socket before the handler started. On a loopback or unix-socket
connection they are then in the server's receive queue, which the kernel delivers to the
backend even when our side's close turns into a reset because results were still unread (the
backend reads the queued messages before it sees the error): the mark commits.
`tests/test_jobs_marks.py` checks this with real `os._exit` and segfault jobs. Over a network
the same holds unless the segment itself is lost and the worker dies before TCP retransmits it;
then the rescuer charges the previous job instead of the poison one (at-least-once still holds).
"""

from __future__ import annotations

import collections
import contextlib
import select
import time
from typing import Any, Iterator

import psycopg
from psycopg import pq

from actors.stores.database import Database, is_connection_error, session_errors
from actors.stores.errors import ConnectionLost
from actors.stores.rows import ClaimedJob

#: the mark statement (`jobs.sql: mark`, which explains `IS NOT DISTINCT FROM 'running'`) as one
#: UPDATE of both rows (20 % less server CPU than two: 0.12 against 0.155 ms a mark), with
#: positional parameters for the prepared statement
MARK_SQL = b"""
WITH marked AS (
    UPDATE jobs
    SET started_at = CASE WHEN id = $2::bigint THEN now() ELSE started_at END,
        ended_at = CASE WHEN id = $4::bigint THEN now() ELSE ended_at END,
        ended_error = CASE WHEN id = $4::bigint THEN $6::text ELSE ended_error END
    WHERE id IN ($2::bigint, $4::bigint) AND claimed_by = $1::bigint
      AND attempt = CASE WHEN id = $2::bigint THEN $3::int ELSE $5::int END
      AND state IS NOT DISTINCT FROM 'running'
    RETURNING id
)
SELECT count(*) FILTER (WHERE id = $2::bigint) AS started FROM marked
"""
STATEMENT = b"thespian_otp_mark"
_PREPARED = object()  # the pending entry of the PREPARE itself


def _text(value: Any) -> bytes | None:
    return None if value is None else str(value).encode()


class MarkPipeline:
    """Marks sent without waiting; results read in order. `send` flushes before it returns."""

    def __init__(self, database: Database, application_name: str = "thespian-otp marks", timeout: float = 30.0) -> None:
        self.database = database
        self.application_name = application_name
        self.timeout = timeout
        self.conn: psycopg.Connection | None = None
        #: the start job of each mark sent and not yet answered (None: an end-only mark)
        self.pending: collections.deque[Any] = collections.deque()
        self._started: int | None = None  # the count of the head entry's result, once read
        self.sent = 0

    @property
    def open(self) -> bool:
        return self.conn is not None

    def _connect(self) -> Any:
        conn = self.database.dedicated(application_name=self.application_name)
        with session_errors(conn, self.database.config):
            pg = conn.pgconn
            pg.nonblocking = 1
            pg.enter_pipeline_mode()
            pg.send_prepare(STATEMENT, MARK_SQL)
            pg.pipeline_sync()
        self.conn = conn
        self.pending.append(_PREPARED)
        self._flush()
        return pg

    def close(self) -> None:
        """Forget what is pending (its results are unknown: the callers assume the jobs were theirs)."""
        conn, self.conn = self.conn, None
        self.pending.clear()
        self._started = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def send(self, process: int, start: ClaimedJob | None, ended: ClaimedJob | None = None, error: str | None = None) -> None:
        """Queue one mark and write it to the socket; it commits on the server on its own."""
        pg = self.conn.pgconn if self.conn is not None else self._connect()
        params = [
            _text(process),
            _text(start.id if start else None),
            _text(start.attempt if start else None),
            _text(ended.id if ended else None),
            _text(ended.attempt if ended else None),
            _text(error) if ended is not None else None,
        ]
        with self._errors():
            pg.send_query_prepared(STATEMENT, params)
            pg.pipeline_sync()
        self.pending.append(start)
        self.sent += 1
        self._flush()

    def poll(self) -> list[tuple[ClaimedJob, bool]]:
        """The answers that arrived, without waiting: (start job, still mine) in send order."""
        if self.conn is None or not self.pending:
            return []
        with self._errors():
            self.conn.pgconn.consume_input()
        return self._read()

    def wait(self) -> list[tuple[ClaimedJob, bool]]:
        """Every pending answer (one round trip at most, for the last one sent)."""
        answers = self.poll()
        deadline = time.monotonic() + self.timeout
        while self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ConnectionLost(f"no answer to a job mark within {self.timeout:g} s")
            select.select([self.conn.pgconn.socket], [], [], left)
            answers += self.poll()
        return answers

    def _read(self) -> list[tuple[ClaimedJob, bool]]:
        pg = self.conn.pgconn
        answers: list[tuple[ClaimedJob, bool]] = []
        while self.pending and not pg.is_busy():
            result = pg.get_result()
            if result is None:
                continue  # the end of one statement's results
            status = result.status
            if status == pq.ExecStatus.PIPELINE_SYNC:
                entry = self.pending.popleft()
                started, self._started = self._started, None
                if entry is not _PREPARED and entry is not None:
                    answers.append((entry, bool(started)))
            elif status == pq.ExecStatus.TUPLES_OK:
                self._started = int(result.get_value(0, 0) or 0)
            elif status == pq.ExecStatus.COMMAND_OK:
                pass  # the PREPARE
            else:
                message = (result.error_message or b"").decode(errors="replace").strip()
                lost = pg.status != pq.ConnStatus.OK
                self.close()
                if lost:
                    raise ConnectionLost(f"the marks connection was lost: {message}")
                raise psycopg.DatabaseError(f"job mark failed ({status.name}): {message}")
        return answers

    def _flush(self) -> None:
        pg = self.conn.pgconn
        deadline = time.monotonic() + self.timeout
        with self._errors():
            while pg.flush():  # 1: more to send (the socket's buffer is full)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectionLost(f"could not send a job mark within {self.timeout:g} s")
                select.select([pg.socket], [pg.socket], [], left)
                pg.consume_input()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A lost connection is `ConnectionLost` (an outage); any failure closes the pipeline,
        whose state is then unknown."""
        conn = self.conn
        if conn is None:
            raise ConnectionLost("the marks connection is closed")
        try:
            yield
        except psycopg.Error as exc:
            lost = conn.pgconn.status != pq.ConnStatus.OK or is_connection_error(exc)
            self.close()
            if lost:
                raise ConnectionLost(f"the marks connection was lost: {exc}") from exc
            raise
