"""A worker's job marks without a round trip per job: libpq pipeline mode on a connection of
their own (issue 21, second round).

Issue 19's `mark` ("the previous job ended, this one starts") is one statement per job. Sent
synchronously, its round trip capped a worker near 1,000 no-op jobs/s. Here each mark is sent
as its own transaction (BEGIN, mark, COMMIT) and written to the socket before the handler
starts; the answers ("was this job still mine?") are asked for with one Sync and read before
the jobs' outcomes are handed on (`MarkPipeline` says why there is no Sync per mark).

What the server has when the worker dies right after a send (`os._exit`, a segfault, SIGKILL):
the bytes were written to the socket before the handler started, and the worker holds no
unread answer, so its kernel ends the stream after them; the server reads and runs every mark
queued before that end, each committed by its COMMIT. `tests/test_jobs_marks.py` checks this
with real deaths right after a send, dozens of marks unanswered. Over a network the bytes
could still be in the worker's send queue when it dies; the kernel sends them before the end
of stream (nothing unread: no reset), so the same holds unless the network loses them.
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
BEGIN, COMMIT = b"thespian_otp_mark_begin", b"thespian_otp_mark_commit"
#: marks sent between two Syncs at most: their answers (about 64 bytes each) must stay below the
#: server's 8 kB output buffer, which it writes out only at a Sync (or when full)
SYNC_EVERY = 64


def _text(value: Any) -> bytes | None:
    return None if value is None else str(value).encode()


class MarkPipeline:
    """Marks sent without waiting, each one its own transaction (BEGIN, mark, COMMIT, no Sync);
    a Sync only when the answers are wanted (`wait`), and then they are all read at once.

    Why no Sync per mark: at a Sync the server writes its answers out, and a server whose write
    fails because the client died (reset) ends the session without reading on: the marks still
    queued behind were lost, the last ones first, which are the ones that matter (the job that
    killed the worker looked unstarted and the one before it was charged; measured by
    `tests/test_jobs_marks.py`, 1 of 2 deaths with a few marks unanswered). Without a Sync the
    server runs every mark it has received, commits each at its COMMIT, buffers the answers and
    writes nothing; the worker's side holds no unread answer, so its death is a plain end of
    stream that the server reads after the last mark."""

    def __init__(self, database: Database, application_name: str = "thespian-otp marks", timeout: float = 30.0) -> None:
        self.database = database
        self.application_name = application_name
        self.timeout = timeout
        self.conn: psycopg.Connection | None = None
        #: what each answer still to come is: ("ack",), ("mark", start job or None), ("sync",)
        self.pending: collections.deque[tuple] = collections.deque()
        self.unsynced = 0  # marks sent since the last Sync
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
            for name, text in ((STATEMENT, MARK_SQL), (BEGIN, b"BEGIN"), (COMMIT, b"COMMIT")):
                pg.send_prepare(name, text)
                self.pending.append(("ack",))
        self.conn = conn
        self.unsynced = 1  # the prepares' answers come with the next Sync
        return pg

    def close(self) -> None:
        """Forget what is pending (its results are unknown: the callers assume the jobs were theirs)."""
        conn, self.conn = self.conn, None
        self.pending.clear()
        self.unsynced = 0
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def send(self, process: int, start: ClaimedJob | None, ended: ClaimedJob | None = None, error: str | None = None) -> list[tuple[ClaimedJob, bool]]:
        """Queue one mark (its own transaction) and write it to the socket before returning.
        Every `SYNC_EVERY` marks it also waits for the answers, which it returns then."""
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
            pg.send_query_prepared(BEGIN, None)
            pg.send_query_prepared(STATEMENT, params)
            pg.send_query_prepared(COMMIT, None)
        self.pending.extend((("ack",), ("mark", start), ("ack",)))
        self.sent += 1
        self.unsynced += 1
        self._flush()
        if self.unsynced >= SYNC_EVERY:
            return self.wait()
        return []

    def wait(self) -> list[tuple[ClaimedJob, bool]]:
        """Every pending answer, (start job, still mine) in send order: one round trip."""
        if self.conn is None or not self.pending:
            return []
        pg = self.conn.pgconn
        if self.unsynced:
            with self._errors():
                pg.pipeline_sync()
            self.pending.append(("sync",))
            self.unsynced = 0
            self._flush()
        answers: list[tuple[ClaimedJob, bool]] = []
        deadline = time.monotonic() + self.timeout
        while True:
            with self._errors():
                pg.consume_input()
            answers += self._read()
            if not self.pending:
                return answers
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ConnectionLost(f"no answer to job marks within {self.timeout:g} s")
            select.select([pg.socket], [], [], left)

    def _read(self) -> list[tuple[ClaimedJob, bool]]:
        pg = self.conn.pgconn
        answers: list[tuple[ClaimedJob, bool]] = []
        while self.pending and not pg.is_busy():
            result = pg.get_result()
            if result is None:
                continue  # the end of one statement's results
            expected = self.pending.popleft()
            status = result.status
            if status == pq.ExecStatus.TUPLES_OK and expected[0] == "mark":
                if expected[1] is not None:
                    answers.append((expected[1], int(result.get_value(0, 0) or 0) > 0))
            elif status == pq.ExecStatus.COMMAND_OK and expected[0] == "ack":
                pass
            elif status == pq.ExecStatus.PIPELINE_SYNC and expected[0] == "sync":
                pass
            elif status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.NONFATAL_ERROR):
                error = psycopg.errors.error_from_result(result, encoding=self.conn.info.encoding)
                lost = pg.status != pq.ConnStatus.OK or is_connection_error(error)
                self.close()
                if lost:  # a server shutting down answers the mark with an error first
                    raise ConnectionLost(f"job marks: {error}") from error
                raise error
            else:
                self.close()
                raise psycopg.DatabaseError(f"job marks: unexpected {pq.ExecStatus(status).name} for {expected[0]}")
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
            raise ConnectionLost("job marks: the connection is closed")
        try:
            yield
        except psycopg.Error as exc:
            lost = conn.pgconn.status != pq.ConnStatus.OK or is_connection_error(exc)
            self.close()
            if lost:
                raise ConnectionLost(f"job marks: {exc}") from exc
            raise
