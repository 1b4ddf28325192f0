"""docs/guide.md is true: its files are the example's files, and the service runs and does what
the guide says (on a real PostgreSQL; outcomes checked in the database)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
SERVICE = ROOT / "examples" / "first_service"


def test_every_file_of_the_guide_is_the_example_verbatim_and_every_example_file_is_in_the_guide():
    blocks = re.findall(r"```python\n# (myshop/\w+\.py)\n(.*?)```\n", GUIDE.read_text(), re.S)
    shown = {name: text for name, text in blocks}
    files = {f"myshop/{p.name}": p.read_text() for p in (SERVICE / "myshop").glob("*.py") if p.name != "__init__.py"}
    assert set(shown) == set(files)
    for name, text in shown.items():
        assert text == files[name], f"{name} in docs/guide.md differs from examples/first_service/{name}"


def test_the_first_service_runs_and_its_jobs_limiter_projection_and_actors_did_their_work(postgres_dsn, tmp_path):
    from actors.stores.config import DatabaseConfig
    from actors.stores.database import Database

    schema = f"t_{uuid.uuid4().hex[:12]}"
    config = DatabaseConfig(postgres_dsn, schema)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "myshop.app"], cwd=SERVICE, capture_output=True, text=True, timeout=120,
            env={**os.environ, "DATABASE_URL": postgres_dsn, "THESPIAN_OTP_SCHEMA": schema, "PYTHONPATH": str(ROOT),
                 "MYSHOP_OUTBOX": str(tmp_path)},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        with Database(config) as database, database.connection() as conn:
            sales = {r["customer"]: (r["orders"], r["cents"]) for r in conn.execute("SELECT * FROM sales_per_customer")}
            jobs = conn.execute("SELECT kind, state, count(*) AS n FROM jobs GROUP BY 1, 2").fetchall()
            events = conn.execute("SELECT type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1").fetchall()
        assert sales == {"ada": (2, 1550), "bob": (1, 700)}  # eve's refused order left no trace
        assert [(j["kind"], j["state"], j["n"]) for j in jobs] == [("shop.send_receipt", "completed", 4)]
        assert {e["type"]: e["n"] for e in events} == {"job.completed": 4, "shop.order_placed": 3}
        assert "eve's order was refused: no price for 'unicorn'" in result.stdout
        assert "the limiter granted 4 permits on 'mail'" in result.stdout  # every receipt asked the limiter
        # the receipts the handlers wrote, each with when its sending began and ended: at no
        # moment were more than the limit's 2 being sent (3 workers could have sent 3)
        receipts = [json.loads(path.read_text()) for path in tmp_path.glob("receipt-*.json")]
        assert sorted(r["customer"] for r in receipts) == ["ada", "ada", "ada", "bob"]
        assert all(r["began"] < r["ended"] for r in receipts)
        at_once = max(sum(1 for r in receipts if r["began"] <= s["began"] < r["ended"]) for s in receipts)
        assert 1 <= at_once <= 2, receipts
        assert f"at most {at_once} receipts were being sent at once (the limit is 2)" in result.stdout, result.stdout
    finally:
        Database(config).drop_schema()
