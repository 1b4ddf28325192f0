"""A projection that wants few of the log's events pays, per wake-up, for what is new: its
checkpoint moves past the unwanted events it has looked at, and one step reads a bounded
number of rows (issue 21)."""

from __future__ import annotations

from actors.projector import ProjectorStatus, projector_spec
from actors.stores.events import PgEventStore
from actors.stores.rows import Checkpoint, NewEvent
from supervision import SupervisorSpec
from tests.support import wait_for

NOISE = 3_000
BATCH = 50
MAX_SCAN = 400


def append(database, kind: str, count: int) -> None:
    PgEventStore(database).append([NewEvent(kind, {"key": "k"}) for _ in range(count)])


def test_a_scan_says_how_far_it_looked_and_stops_at_its_row_cap(database):
    from actors.stores.events import scan_events

    append(database, "tick", 2)
    append(database, "noise", 1_000)
    with database.connection() as conn:
        whole = scan_events(conn, Checkpoint(), 10, ["tick"])
        capped = scan_events(conn, Checkpoint(), 10, ["tick"], max_rows=100)
        conn.commit()
    head = PgEventStore(database).head()
    assert [e.type for e in whole.events] == ["tick", "tick"]
    assert whole.exhausted and whole.scanned.position == head and whole.rows == 1_002
    assert [e.type for e in capped.events] == ["tick", "tick"]
    assert not capped.exhausted and capped.rows == 100 and capped.scanned.position == 100


def test_a_projection_of_rare_events_checkpoints_past_the_unwanted_tail_and_rereads_nothing(make_runtime, database, db_config):
    append(database, "tick", 3)
    append(database, "noise", NOISE)
    rt = make_runtime().start(
        SupervisorSpec("p", children=[projector_spec(db_config, "tests.projections:Audited", batch=BATCH, max_scan=MAX_SCAN, poll_interval=0.1)])
    )
    store = PgEventStore(database)

    def caught_up() -> dict | None:
        status = rt.ask("projector-audited", ProjectorStatus())
        return status if status["position"] == store.head() else None

    status = wait_for(caught_up, timeout=30, what="the checkpoint to reach the head of the log")
    assert status["applied"] == 3
    # one step never reads more than the cap (plus the window that crossed it)
    assert status["last_scan_rows"] <= MAX_SCAN + BATCH
    before = status["scanned_rows"]
    append(database, "noise", 5)
    status = wait_for(caught_up, timeout=30, what="the checkpoint to move past the new events")
    # the wake-up read the 5 new rows, not the 3,000 unwanted ones behind the last wanted event
    assert status["scanned_rows"] - before <= 10
    assert status["applied"] == 3
