"""The shop's supervision tree, and a short run of it: python -m myshop.app"""

import json
import os
import tempfile
import time
from pathlib import Path

import myshop.jobs  # noqa: F401 - registers the job kinds in this process: new_job checks them
from actors.jobs import jobs_tree, new_job, wait_for_workers
from actors.limiter import Limit, Limiter, LimiterServer
from actors.projector import projector_spec, status
from actors.stores import DatabaseConfig
from actors.stores.jobs import PgJobStore
from actors.stores.setup import resolve_database
from myshop.checkout import Checkout, Prices, UnknownItem
from myshop.projections import SalesPerCustomer
from supervision import ChildSpec, Runtime, SupervisorSpec

PRICES = {"tea": 400, "cake": 350}  # cents


def shop_tree(config: DatabaseConfig) -> SupervisorSpec:
    return SupervisorSpec(
        "shop",
        children=[  # started in this order, stopped in the reverse order
            ChildSpec("limiter", LimiterServer, kwargs={"limits": {"mail": Limit(2)}}),
            ChildSpec("prices", Prices, kwargs={"prices": PRICES}),
            jobs_tree(config, handlers=["myshop.jobs"], workers=3),  # 3 workers, 2 mail permits
            ChildSpec("checkout", Checkout, kwargs={"database": config}),
            projector_spec(config, SalesPerCustomer),
        ],
    )


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def most_at_once(outbox: Path) -> tuple[int, int]:
    """(receipts in the outbox, the most that were being sent at the same moment)."""
    receipts = [json.loads(path.read_text()) for path in outbox.glob("receipt-*.json")]
    # +1 when a sending begins, -1 when one ends; at equal times the end counts first
    edges = sorted([(r["began"], 1) for r in receipts] + [(r["ended"], -1) for r in receipts])
    sending = most = 0
    for _, change in edges:
        sending += change
        most = max(most, sending)
    return len(receipts), most


def main() -> None:
    # where the receipts go; set before the runtime starts, so its worker processes inherit it
    outbox = os.environ.get("MYSHOP_OUTBOX") or tempfile.mkdtemp(prefix="myshop-outbox-")
    os.environ["MYSHOP_OUTBOX"] = outbox
    # DATABASE_URL if set, else an embedded PostgreSQL; THESPIAN_OTP_SCHEMA or "thespian_otp"
    with resolve_database() as handle, Runtime() as rt:
        rt.start(shop_tree(handle.config))
        wait_for_workers(rt, 3)  # start() returns before the pool's workers are all up

        with handle.database() as database:
            jobs = PgJobStore(database)
            done_before = jobs.counts().get(("default", "completed"), 0)  # receipts of earlier runs
            for customer, item, quantity in [("ada", "tea", 3), ("bob", "cake", 2), ("ada", "cake", 1)]:
                cents = rt.ask("checkout", ("order", customer, item, quantity))
                print(f"{customer} ordered {quantity} {item}: {cents / 100:.2f} EUR")
            try:
                rt.ask("checkout", ("order", "eve", "unicorn", 1))
            except UnknownItem as exc:
                print(f"eve's order was refused: {exc}")
            # from outside any actor: build jobs with new_job (validated here) and enqueue them
            rt.enqueue_many([new_job("shop.send_receipt", {"customer": "ada", "cents": 0}, priority=1)])
            print("ada asked for her receipt again")

            wait_for(lambda: jobs.counts().get(("default", "completed"), 0) == done_before + 4, timeout=30, what="the receipts")
            mail = next(key for key in Limiter(rt).stats() if key.key == "mail")
            sent, most = most_at_once(Path(outbox))
            print(f"{sent} receipts in {outbox}; the limiter granted {mail.granted} permits on 'mail',"
                  f" and at most {most} receipts were being sent at once (the limit is 2)")
            if most > 2:
                raise SystemExit(f"the mail limit did not hold: {most} receipts were sent at once")
            wait_for(lambda: status(database, [SalesPerCustomer])[0].lag == 0, timeout=30, what="the projection")
            with database.connection() as conn:
                rows = conn.execute("SELECT customer, orders, cents FROM sales_per_customer ORDER BY customer").fetchall()
                conn.commit()
    for row in rows:
        print(f"sales (projection): {row['customer']} placed {row['orders']} orders, {row['cents'] / 100:.2f} EUR")


if __name__ == "__main__":
    main()
