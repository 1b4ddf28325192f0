"""The observer reached from another machine: a Linux network namespace (tests/netns.py) joined to
this one by a veth link fetches the page, its feed and its job actions over that link, as a
browser on another host would; a foreign Host or Origin is still refused."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid

import pytest

from actors.observer import serve
from actors.stores.database import Database
from tests.netns import hosts_or_skip
from tests.observer_support import CliObserver, job_row, system_spec
from tests.support import wait_for

#: a client on the other host: runs the requests in argv in order and prints [[status, body], ...];
#: "$TOKEN" in a header is the token the first page it fetched carried, as a browser's script reads it
REMOTE = r"""
import json, re, sys, urllib.error, urllib.request
base, steps = sys.argv[1], json.loads(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
token, results = None, []
for method, path, headers in steps:
    headers = {k: v.replace("$TOKEN", token or "") for k, v in headers.items()}
    request = urllib.request.Request(base + path, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with opener.open(request, timeout=10) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    found = re.search(r"&quot;token&quot;: &quot;([^&]+)&quot;", body)
    token = token or (found.group(1) if found else None)
    results.append([status, body])
print(json.dumps(results))
"""


@pytest.fixture
def other_host():
    with hosts_or_skip(1) as made:
        yield made[0]


def remote(host, base: str, *steps: tuple[str, str, dict]) -> list[tuple[int, str]]:
    """Run `steps` (method, path, headers) from `host`, against `base`."""
    result = subprocess.run(
        [*host.exec, sys.executable, "-c", REMOTE, base, json.dumps(steps)], capture_output=True, text=True, timeout=60
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [tuple(r) for r in json.loads(result.stdout)]


@pytest.mark.timeout(180)
def test_a_wildcard_bind_serves_another_machine_by_address_and_name_and_refuses_foreign_hosts(
    other_host, make_runtime, db_config, monkeypatch, tmp_path
):
    """`thespian-otp observer --host 0.0.0.0 --trusted-network`, as a user starts it: the page, the
    snapshot, a retry and a cancel from another host work through the link's address, this
    machine's name and an --allowed-host name; a rebinding name or a foreign Origin does not."""
    monkeypatch.setenv("THESPIAN_OTP_STATE_DIR", str(tmp_path))
    name = f"net-{uuid.uuid4().hex[:6]}"
    rt = make_runtime(log_level="CRITICAL", name=name)
    rt.start(system_spec(db_config, cancel_grace=2.0))
    observer = CliObserver(
        "--name", name, "--dsn", db_config.dsn, "--schema", db_config.schema, "--port", "0",
        "--host", "0.0.0.0", "--trusted-network", "--allowed-host", "Observer.Example",
        env={"THESPIAN_OTP_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    try:
        port = int(re.search(r"open http://[\d.]+:(\d+)/", observer.read_until("Ctrl-C stops")).group(1))
        base = f"http://{other_host.gateway}:{port}/"
        with Database(db_config) as database:
            failed = rt.enqueue("always_fails", {})
            wait_for(lambda: job_row(database, failed)["state"] == "failed", timeout=20, what="the job to fail")
            attempts = job_row(database, failed)["attempt"]
            named = {"Host": f"observer.example:{port}"}
            results = remote(
                other_host, base,
                ("GET", "", {}),  # by the address of the link: the page, and the token in it
                ("GET", "api/snapshot", {}),
                ("GET", "", {"Host": f"{socket.gethostname()}:{port}"}),  # by this machine's name
                ("GET", "", named),  # by the --allowed-host name
                ("GET", "api/snapshot", {"Host": f"rebind.evil.example:{port}"}),  # a name of someone else's
                ("POST", f"api/jobs/{failed}/retry", {"X-Observer-Token": "$TOKEN", "Origin": "http://evil.example"}),
                ("POST", f"api/jobs/{failed}/retry", {"Origin": f"http://{other_host.gateway}:{port}"}),  # no token
                ("POST", f"api/jobs/{failed}/retry", {"X-Observer-Token": "$TOKEN", "Origin": f"http://{other_host.gateway}:{port}"}),
            )  # fmt: skip
            statuses = [status for status, _ in results]
            assert statuses == [200, 200, 200, 200, 400, 403, 403, 200], results
            snapshot = json.loads(results[1][1])
            assert snapshot["runtime"]["name"] == name and "app" in {n["name"] for n in snapshot["tree"]}
            assert json.loads(results[7][1])["job"]["state"] == "available"
            # it printed the address other machines use, and the names it answers
            printed = observer.read_until("answers the Host names")
            assert base in printed and "observer.example" in printed.split("answers the Host names")[1]
            # the retry from the other host ran the job again (and it failed again: it always does)
            wait_for(lambda: (row := job_row(database, failed))["state"] == "failed" and row["attempt"] > attempts,
                     timeout=20, what="the retried job to run again")  # fmt: skip

            running = rt.enqueue("cooperative", {"path": str(tmp_path / "log"), "seconds": 60})
            wait_for(lambda: job_row(database, running)["state"] == "running", timeout=20, what="the job to run")
            origin = {"Origin": f"http://observer.example:{port}"}
            results = remote(
                other_host, base,
                ("GET", "", named),
                ("POST", f"api/jobs/{running}/cancel", {**named, "X-Observer-Token": "$TOKEN", "Origin": "http://rebind.evil.example"}),
                ("POST", f"api/jobs/{running}/cancel", {"Host": f"rebind.evil.example:{port}", "X-Observer-Token": "$TOKEN",
                                                        "Origin": f"http://rebind.evil.example:{port}"}),
                ("POST", f"api/jobs/{running}/cancel", {**named, **origin, "X-Observer-Token": "$TOKEN"}),
            )  # fmt: skip
            assert [status for status, _ in results] == [200, 403, 400, 200], results
            assert job_row(database, running)["state"] == "cancelled"
    finally:
        observer.stop()


@pytest.mark.timeout(120)
def test_a_specific_address_answers_its_own_and_the_allowed_names_only(other_host, make_runtime, db_config):
    from tests.support import Echo
    from supervision import ChildSpec, SupervisorSpec

    rt = make_runtime(log_level="CRITICAL")
    rt.start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    with serve(rt, db_config, host=other_host.gateway, trusted_network=True, allowed_hosts=["observer.example"]) as observer:
        assert observer.url == f"http://{other_host.gateway}:{observer.port}/"
        port = observer.port
        results = remote(
            other_host, observer.url,
            ("GET", "api/snapshot", {}),
            ("GET", "api/snapshot", {"Host": f"observer.example:{port}"}),
            ("GET", "api/snapshot", {"Host": f"{socket.gethostname()}:{port}"}),  # not the address it listens on
            ("GET", "api/snapshot", {"Host": f"localhost:{port}"}),
            ("POST", "api/jobs/1/retry", {"Host": f"observer.example:{port}", "X-Observer-Token": observer.token,
                                          "Origin": f"http://localhost:{port}"}),  # not an origin of this observer
        )  # fmt: skip
        assert [status for status, _ in results] == [200, 200, 400, 400, 403], results
        roots = {n["name"]: n for n in json.loads(results[0][1])["tree"]}
        assert [c["name"] for c in roots["root"]["children"]] == ["echo"]
