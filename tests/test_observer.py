"""The observer over HTTP, against a real runtime on real PostgreSQL: /metrics, the live feed,
actor details, and the guards on job actions (loopback, host, token, origin, read-only)."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.observer import Observer, serve
from supervision import ConfigError
from tests.observer_support import (
    backend_client_port, client_ports, get, install_stand_in, job_row, post, real_job_ops, system_spec, workers,
)
from tests.support import wait_for


def metrics(url: str) -> dict[tuple[str, tuple], float]:
    status, body = get(url + "metrics")
    assert status == 200
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def system(make_runtime, db_config):
    rt = make_runtime(log_level="CRITICAL")
    rt.start(system_spec(db_config))
    return rt


def test_metrics_parse_and_their_counters_move_when_actors_restart_and_jobs_finish(system, db_config):
    rt = system
    with serve(rt, db_config, interval=0.2) as observer:
        worker = workers(rt.tree())[0]
        before = metrics(observer.url)
        assert sample(before, "thespian_otp_actor_restarts_total", actor=worker, **{"class": "Worker", "kind": "worker"}) == 0
        assert sample(before, "thespian_otp_actor_running", actor=worker, **{"class": "Worker", "kind": "worker"}) == 1
        assert sample(before, "thespian_otp_observed_restarts_total") == 0
        assert sample(before, "thespian_otp_projection_lag_events", projection="job_stats") is not None
        assert sample(before, "thespian_otp_limiter_concurrency", limiter="limiter", key="images") == 2

        rt.kill(worker)
        after = wait_for(
            lambda: (m := metrics(observer.url)) and sample(m, "thespian_otp_observed_restarts_total") == 1 and m,
            timeout=10, what="the restart in /metrics",
        )  # fmt: skip
        assert sample(after, "thespian_otp_actor_restarts_total", actor=worker, **{"class": "Worker", "kind": "worker"}) == 1

        ids = [rt.enqueue("work", {"sleep": 0.01}) for _ in range(5)] + [rt.enqueue("always_fails", {})]

        def finished():
            m = metrics(observer.url)
            done = sample(m, "thespian_otp_jobs_finished_total", kind="work", outcome="completed")
            failed = sample(m, "thespian_otp_jobs_finished_total", kind="always_fails", outcome="failed")
            # the table's figures are read at most every database_interval (1 s): they follow
            in_table = sample(m, "thespian_otp_jobs", queue="default", kind="work", state="completed")
            failed_in_table = sample(m, "thespian_otp_jobs", queue="default", kind="always_fails", state="failed")
            return m if done == 5 and failed == 1 and in_table == 5 and failed_in_table == 1 else None

        # job events are read in commit-safe order: another session's long transaction on a
        # shared server holds them back (15 s seen), hence 60 s
        m = wait_for(finished, timeout=60, what="5 completed and 1 failed job in /metrics")
        assert sample(m, "thespian_otp_job_duration_seconds_count", kind="work", outcome="completed") == 5
        # always_fails has max_attempts=2: one retried attempt, then failed
        assert sample(m, "thespian_otp_jobs_finished_total", kind="always_fails", outcome="retried") == 1
        assert sample(m, "thespian_otp_jobs", queue="default", kind="work", state="completed") == 5
        assert sample(m, "thespian_otp_jobs", queue="default", kind="always_fails", state="failed") == 1
        # the killed worker's row stays until its heartbeat expires and the rescuer removes it
        processes = lambda: sum(v for (name, _), v in metrics(observer.url).items() if name == "thespian_otp_worker_processes")  # noqa: E731
        wait_for(lambda: processes() == 2, timeout=20, what="the two live worker processes")
        assert all(job_row(observer.database, i)["state"] in ("completed", "failed") for i in ids)
        # the projection catches up: its lag gauge goes back to 0
        wait_for(lambda: sample(metrics(observer.url), "thespian_otp_projection_lag_events", projection="job_stats") == 0,
                 timeout=60, what="projection lag 0")  # fmt: skip


def test_the_live_feed_sends_each_new_snapshot_and_details_show_the_last_exit(system, db_config):
    rt = system
    with serve(rt, db_config, interval=0.2) as observer:
        worker = workers(rt.tree())[0]
        with urllib.request.urlopen(observer.url + "api/events", timeout=10) as feed:
            first = _next_snapshot(feed)
            rt.kill(worker)

            def restarted():
                snapshot = _next_snapshot(feed)
                node = _find(snapshot["tree"], worker)
                return snapshot if node and node["restarts"] == 1 and node["status"] == "running" else None

            snapshot = wait_for(restarted, timeout=10, what="a snapshot with the restart")
        assert snapshot["taken_at"] > first["taken_at"]
        assert snapshot["totals"]["restarts"] == 1
        assert len(snapshot["series"]["restarts"]) == len(snapshot["series"]["at"]) and sum(snapshot["series"]["restarts"]) == 1
        status, body = get(observer.url + f"api/actors/{worker}")
        details = json.loads(body)
        assert status == 200 and details["restarts"] == 1 and details["last_exit"]
        assert any(e["what"].startswith("exited:") for e in details["recent_errors"])
        assert details["spec"]["actor"] == "actors.jobs.worker.Worker"  # the pool's template
        assert details["process"]["pid"] == _find(snapshot["tree"], worker)["pid"]
        assert get(observer.url + "api/actors/nobody")[0] == 404


def _next_snapshot(feed) -> dict:
    data = None
    while True:
        line = feed.readline().decode()
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "\n" and data is not None:
            return data


def _find(nodes, name):
    for node in nodes:
        if node["name"] == name:
            return node
        found = _find(node["children"], name)
        if found:
            return found
    return None


@pytest.fixture
def job_ops(monkeypatch):
    """The real job operations API if this tree has it, else the stand-in (tests/observer_support)."""
    if real_job_ops() is None:
        install_stand_in(monkeypatch)
        return "stand-in"
    return "real"


def _failed_job(rt, database) -> int:
    job_id = rt.enqueue("always_fails", {})
    wait_for(lambda: job_row(database, job_id)["state"] == "failed", timeout=20, what="the job to fail")
    return job_id


def test_job_actions_need_the_token_and_a_same_site_origin_and_change_nothing_otherwise(system, db_config, job_ops):
    rt = system
    with serve(rt, db_config, interval=0.2) as observer:
        assert observer.actions_enabled, observer.actions_note
        job_id = _failed_job(rt, observer.database)
        url = observer.url + f"api/jobs/{job_id}/retry"
        origin = f"http://127.0.0.1:{observer.port}"
        refused = [
            post(url),  # no token
            post(url, {"X-Observer-Token": "guessed"}),
            post(url, {"X-Observer-Token": observer.token, "Origin": "http://evil.example"}),
            post(url, {"X-Observer-Token": observer.token, "Sec-Fetch-Site": "cross-site"}),
        ]
        assert [status for status, _ in refused] == [403, 403, 403, 403], refused
        assert get(observer.url, {"Host": "evil.example"})[0] == 400  # DNS rebinding: an unknown Host is refused
        assert get(observer.url + "api/snapshot", {"Host": "rebind.evil.example:80"})[0] == 400
        assert job_row(observer.database, job_id)["state"] == "failed"  # nothing changed
        assert get(observer.url + f"api/jobs/{job_id}/retry")[0] == 405  # a GET never acts

        attempts = job_row(observer.database, job_id)["attempt"]  # read before: the retry runs at once
        status, body = post(url, {"X-Observer-Token": observer.token, "Origin": origin})
        assert status == 200, body
        assert body["job"]["state"] == "available"  # as the retry left it
        # it runs again (and fails again: always_fails never works): one more attempt
        wait_for(lambda: (row := job_row(observer.database, job_id))["state"] == "failed" and row["attempt"] > attempts,
                 timeout=20, what="the retried job to run again")  # fmt: skip
        status, body = post(observer.url + "api/jobs/999999/retry", {"X-Observer-Token": observer.token, "Origin": origin})
        assert status in (404, 409), body
        status, body = post(observer.url + f"api/jobs/{job_id}/cancel", {"X-Observer-Token": observer.token, "Origin": origin})
        assert status == 409 and "JobStateError" in body["error"], body  # a failed job cannot be cancelled
        assert post(observer.url + f"api/jobs/{job_id}/explode", {"X-Observer-Token": observer.token})[0] == 404


def test_read_only_hides_the_actions_and_refuses_them(system, db_config, job_ops):
    rt = system
    with serve(rt, db_config, read_only=True, interval=0.2) as observer:
        job_id = _failed_job(rt, observer.database)
        status, page = get(observer.url)
        assert status == 200 and "&quot;actions&quot;: false" in page.decode()
        status, body = post(observer.url + f"api/jobs/{job_id}/retry", {"X-Observer-Token": observer.token})
        assert status == 403 and "read-only" in body["error"]
        assert job_row(observer.database, job_id)["state"] == "failed"
        # reading a job's details is fine read-only: every failed attempt with its error
        status, body = get(observer.url + f"api/jobs/{job_id}")
        job = json.loads(body)["job"]
        assert status == 200 and job["state"] == "failed" and [e["attempt"] for e in job["errors"]] == [1, 2]
        assert all("this job never works" in e["error"] for e in job["errors"])
        assert get(observer.url + "api/jobs/987654")[0] == 404 and get(observer.url + "api/jobs/x")[0] == 400


def test_without_the_job_operations_api_the_page_is_read_only(system, db_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "actors.jobs.ops", None)  # the import fails, as on a tree without issue 15
    with serve(system, db_config, interval=0.2) as observer:
        assert not observer.actions_enabled and "not installed" in observer.actions_note
        status, body = post(observer.url + "api/jobs/1/retry", {"X-Observer-Token": observer.token})
        assert status == 503 and "not installed" in body["error"]
        assert "&quot;actions&quot;: false" in get(observer.url)[1].decode()


def test_a_tree_only_observer_works_without_a_database(make_runtime):
    from tests.support import Echo
    from supervision import ChildSpec, SupervisorSpec

    rt = make_runtime(log_level="CRITICAL")
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    with serve(rt, interval=0.2) as observer:
        snapshot = json.loads(get(observer.url + "api/snapshot")[1])
        assert snapshot["database"] is None and _find(snapshot["tree"], "echo")["status"] == "running"
        assert snapshot["errors"] == {}
        assert any(name == "thespian_otp_actor_running" for name, _ in metrics(observer.url))


def test_bad_settings_are_clear_errors_and_bind_nothing(make_runtime):
    rt = make_runtime(log_level="CRITICAL")
    with pytest.raises(ConfigError, match="trusted_network"):
        Observer(rt, host="0.0.0.0")
    with pytest.raises(ConfigError, match="port"):
        Observer(rt, port=70000)
    with pytest.raises(ConfigError, match="interval"):
        Observer(rt, interval=0)
    for bad in ("observer.example", ["*"], ["http://observer.example"], ["observer.example:8765"], ["a b"]):
        with pytest.raises(ConfigError, match="allowed_hosts"):
            Observer(rt, allowed_hosts=bad)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(ConfigError, match="in use"):
            serve(rt, port=busy.getsockname()[1])
    finally:
        busy.close()


def test_the_observer_reports_a_database_outage_and_keeps_showing_the_tree(make_runtime, own_pg):
    """The database restarts under the observer: the page says so, the tree stays, and it recovers."""
    from actors.stores.config import DatabaseConfig
    from actors.stores.database import Database
    from actors.stores.migrate import Migrator

    config = DatabaseConfig(own_pg.dsn, schema="observer_outage", connect_timeout=1.0)
    with Database(config) as database:
        Migrator(database).apply()
    from tests.support import Echo
    from supervision import ChildSpec, SupervisorSpec

    rt = make_runtime(log_level="CRITICAL")
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    with serve(rt, config, interval=0.2) as observer:
        assert json.loads(get(observer.url + "api/snapshot")[1])["errors"] == {}
        own_pg.stop_server()
        try:
            down = wait_for(lambda: (s := json.loads(get(observer.url + "api/snapshot")[1]))["errors"].get("database") and s,
                            timeout=20, what="the outage on the page")  # fmt: skip
            assert _find(down["tree"], "echo")["status"] == "running" and down["database"] is None
        finally:
            own_pg.start_server()
        wait_for(lambda: json.loads(get(observer.url + "api/snapshot")[1])["errors"] == {}, timeout=30, what="recovery")


def test_cancel_stops_a_running_job_from_completing_and_other_nodes_are_listed(make_runtime, db_config, job_ops, tmp_path):
    from actors.jobs import CompleterStats, WorkerStatus
    from actors.stores.database import Database
    from actors.stores.processes import PgProcessStore
    from tests.test_jobs_liveness import lines

    rt = make_runtime(log_level="CRITICAL")
    rt.start(system_spec(db_config, cancel_grace=2.0))
    with serve(rt, db_config, interval=0.2) as observer:
        origin = {"X-Observer-Token": observer.token, "Origin": f"http://127.0.0.1:{observer.port}"}
        path = str(tmp_path / "log")
        # "cooperative" works in steps until done (30 s) or until current_job().cancelled
        job_id = rt.enqueue("cooperative", {"path": path, "seconds": 30})
        wait_for(lambda: job_row(observer.database, job_id)["state"] == "running", timeout=20, what="the job to run")
        shown = wait_for(lambda: [j for j in json.loads(get(observer.url + "api/snapshot")[1])["database"]["jobs"]["running"] if j["id"] == job_id],
                         timeout=10, what="the running job on the page")  # fmt: skip
        assert shown[0]["kind"] == "cooperative"
        status, body = post(observer.url + f"api/jobs/{job_id}/cancel", origin)
        assert status == 200 and body["job"]["state"] == "cancelled", body
        # the worker hears the cancel (issue 19), the handler sees current_job().cancelled and
        # returns well within the 2 s grace; the worker writes no outcome for a job not its own
        wait_for(lambda: [l for l in lines(path) if l[0] == "cancelled"], timeout=20, what="the handler to see the cancel")
        worker = next(n.name for n in rt.tree().walk() if n.actor_class == "Worker" and rt.ask(n.name, WorkerStatus())["cancelled"])
        status = rt.ask(worker, WorkerStatus())
        assert (status["cancelled"], status["completed"], status["failed"]) == (1, 0, 0)
        completer = next(n.name for n in rt.tree().walk() if n.actor_class == "Completer")
        assert rt.ask(completer, CompleterStats())["fenced"] == 0  # nothing was sent for it
        assert not [l for l in lines(path) if l[0] == "end"]
        row = job_row(observer.database, job_id)
        assert (row["state"], row["attempt"]) == ("cancelled", 1)
        if job_ops == "real":  # the real cancel records itself in the job's history: one entry
            status, body = get(observer.url + f"api/jobs/{job_id}")
            assert status == 200 and [e.get("outcome") for e in json.loads(body)["job"]["errors"]] == ["cancelled"]

        # a worker process of another node, registered in the shared table as that node does
        with Database(db_config) as database:
            other = PgProcessStore(database).register("node-b:worker-1", ttl=60)  # as jobs_tree(node="node-b") does
            try:
                def listed():
                    nodes = json.loads(get(observer.url + "api/snapshot")[1])["database"]["nodes"]
                    return {n["node"]: n for n in nodes}.get("node-b")

                node = wait_for(listed, timeout=10, what="node-b on the page")
                assert [p["id"] for p in node["processes"]] == [other.id]
                assert sample(metrics(observer.url), "thespian_otp_worker_processes", node="node-b") == 1
            finally:
                PgProcessStore(database).deregister(other.id)
        found = metrics(observer.url)
        assert sample(found, "thespian_otp_monitor_ask_seconds_count") > 0
        assert sample(found, "thespian_otp_observer_snapshot_seconds_count") > 0


def test_one_snapshot_counts_a_burst_of_job_events_larger_than_one_read_window(make_runtime, db_config):
    """12,000 job events land between two snapshots (more than one 5,000-event window)."""
    from actors.stores.database import Database
    from actors.stores.events import PgEventStore
    from actors.stores.rows import NewEvent
    from tests.support import Echo
    from supervision import ChildSpec, SupervisorSpec

    rt = make_runtime(log_level="CRITICAL")
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    with serve(rt, db_config, interval=60) as observer:  # no timer snapshot: this test takes them
        with Database(db_config) as database:
            PgEventStore(database).append(
                [NewEvent("job.completed", {"id": i, "kind": "burst", "run_ms": 2.0}) for i in range(12_000)]
            )
        snapshot = observer.collector.collect()
        assert snapshot["totals"]["completed"] == 12_000
        assert sample(metrics(observer.url), "thespian_otp_jobs_finished_total", kind="burst", outcome="completed") == 12_000


def test_crashes_recoverable_errors_and_dead_letters_move_in_metrics_and_on_the_chart(make_runtime):
    from supervision import ActorCrashed, BadRequest, ChildSpec, DeadLetter, SupervisorSpec
    from supervision.messages import Envelope
    from tests.support import Get, KeyValue, Quitter

    rt = make_runtime(log_level="CRITICAL")
    rt.start(SupervisorSpec("root", intensity=10, children=[ChildSpec("q", Quitter), ChildSpec("kv", KeyValue)]))
    labels = {"class": "Quitter", "kind": "worker"}
    with serve(rt, interval=0.2) as observer:
        with pytest.raises(ActorCrashed):
            rt.ask("q", "crash")
        with pytest.raises(BadRequest):
            rt.ask("kv", Get(123))
        stale = rt.whereis("kv")
        rt.kill("kv")
        wait_for(lambda: rt.whereis("kv").address != stale.address, timeout=10, what="kv restarted")
        with pytest.raises(DeadLetter):  # a request to the dead actor's old address
            rt._request(stale.address, Envelope("hello?", "kv"), time.monotonic() + 5, None, "kv")

        def moved():
            m = metrics(observer.url)
            return m if (
                sample(m, "thespian_otp_actor_crashes_total", actor="q", **labels) == 1
                and sample(m, "thespian_otp_actor_restarts_total", actor="q", **labels) == 1
                and sample(m, "thespian_otp_actor_recoverable_errors_total", actor="kv", **{"class": "KeyValue", "kind": "worker"}) == 1
                and sample(m, "thespian_otp_actor_dead_letters_total", actor="kv", **{"class": "KeyValue", "kind": "worker"}) >= 1
            ) else None

        m = wait_for(moved, timeout=15, what="crash, restart, error and dead letter in /metrics")
        assert sample(m, "thespian_otp_observed_crashes_total") == 1
        assert sample(m, "thespian_otp_observed_dead_letters_total") >= 1
        series = json.loads(get(observer.url + "api/snapshot")[1])["series"]
        assert sum(series["crashes"]) == 1 and sum(series["restarts"]) == 2 and sum(series["dead_letters"]) >= 1


def test_limiter_permits_held_and_callers_waiting_show_in_the_snapshot_and_metrics(system, db_config):
    """Two permits of `images` (its limit) held by this process and a third caller waiting: the
    page's data and /metrics show held 2, waiting 1; a release hands the permit to the waiter,
    and a wait that times out moves the timed-out counter."""
    from concurrent.futures import ThreadPoolExecutor

    from actors.limiter import Limiter, LimitTimeout

    rt = system
    limiter = Limiter(rt)
    labels = {"limiter": "limiter", "key": "images"}

    def shown() -> dict | None:
        snapshot = json.loads(get(observer.url + "api/snapshot")[1])
        keys = {(lim["actor"], k["key"]): k for lim in snapshot["limiters"] for k in lim["keys"]}
        return keys.get(("limiter", "images"))

    def figures(m: dict) -> tuple:
        return tuple(sample(m, f"thespian_otp_limiter_{name}", **labels) for name in ("held", "waiting", "granted_total", "timed_out_total"))

    with serve(rt, db_config, interval=0.2) as observer, ThreadPoolExecutor(1) as pool:
        leases = [limiter.acquire("images", timeout=5) for _ in range(2)]
        waiter = pool.submit(limiter.acquire, "images", 30)
        key = wait_for(lambda: (k := shown()) and k["waiting"] == 1 and k, timeout=10, what="the waiting caller on the page")
        assert (key["held"], key["concurrency"], key["waiting"], key["granted"], key["timed_out"]) == (2, 2, 1, 2, 0)
        assert wait_for(lambda: figures(metrics(observer.url)) == (2, 1, 2, 0), timeout=10, what="held 2 and waiting 1 in /metrics")

        limiter.release(leases[0])  # the waiter gets it: still 2 held, nobody waits
        leases[0] = waiter.result(timeout=10)
        wait_for(lambda: figures(metrics(observer.url)) == (2, 0, 3, 0), timeout=10, what="the permit handed to the waiter")
        with pytest.raises(LimitTimeout):
            limiter.acquire("images", timeout=0.3)
        wait_for(lambda: figures(metrics(observer.url)) == (2, 0, 3, 1), timeout=10, what="the timed-out wait in /metrics")
        for lease in leases:
            limiter.release(lease)
        key = wait_for(lambda: (k := shown()) and k["held"] == 0 and k, timeout=10, what="the permits back")
        assert (key["waiting"], key["granted"], key["timed_out"]) == (0, 3, 1)


def test_the_projection_lock_holder_shown_is_the_projectors_session_and_follows_its_restart(system, db_config):
    """The backend the page names as the holder of job_stats' lock is a connection of the
    projector actor's own OS process (its client port is one of that process's sockets); after
    the projector is SIGKILLed the page names the new projector's session."""
    rt = system
    projector = next(n.name for n in rt.tree().walk() if n.actor_class == "Projector")

    def holder(other_than: int | None = None) -> dict | None:
        snapshot = json.loads(get(observer.url + "api/snapshot")[1])
        row = {p["name"]: p for p in snapshot["database"]["projections"]}["job_stats"]
        return row if row["holder_pid"] and row["holder_pid"] != other_than else None

    def owned_by_projector(row: dict) -> bool:
        port = backend_client_port(observer.database, row["holder_pid"])
        if port is None or port < 0:
            pytest.skip("the database is reached over a Unix socket: no client port to match (set DATABASE_URL to a TCP address)")
        return port in client_ports(rt.tree()[projector].pid)

    with serve(rt, db_config, interval=0.2) as observer:
        first = wait_for(holder, timeout=30, what="the projector to hold its lock")
        assert owned_by_projector(first), first
        assert first["holder"].startswith("thespian-otp:projector:"), first
        assert sample(metrics(observer.url), "thespian_otp_projection_lock_held", projection="job_stats") == 1

        killed = rt.kill(projector)
        second = wait_for(lambda: holder(other_than=first["holder_pid"]), timeout=30, what="the restarted projector's session")
        assert rt.tree()[projector].pid != killed
        assert owned_by_projector(second), second
        wait_for(lambda: backend_client_port(observer.database, first["holder_pid"]) is None, timeout=10,
                 what="the killed projector's session to end")  # fmt: skip
