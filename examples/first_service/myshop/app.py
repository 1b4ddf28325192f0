"""The shop's supervision tree, and a short run of it: python -m myshop.app"""

import time

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
            jobs_tree(config, handlers=["myshop.jobs"], workers=2),
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


def main() -> None:
    # DATABASE_URL if set, else an embedded PostgreSQL; THESPIAN_OTP_SCHEMA or "thespian_otp"
    with resolve_database() as handle, Runtime() as rt:
        rt.start(shop_tree(handle.config))
        wait_for_workers(rt, 2)  # start() returns before the pool's workers are all up

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

        with handle.database() as database:
            jobs = PgJobStore(database)
            wait_for(lambda: jobs.counts().get(("default", "completed"), 0) == 4, timeout=30, what="the receipts")
            mail = next(key for key in Limiter(rt).stats() if key.key == "mail")
            print(f"4 receipts sent; the limiter granted {mail.granted} permits on 'mail', never more than 2 at once")
            wait_for(lambda: status(database, [SalesPerCustomer])[0].lag == 0, timeout=30, what="the projection")
            with database.connection() as conn:
                rows = conn.execute("SELECT customer, orders, cents FROM sales_per_customer ORDER BY customer").fetchall()
                conn.commit()
        for row in rows:
            print(f"sales (projection): {row['customer']} placed {row['orders']} orders, {row['cents'] / 100:.2f} EUR")


if __name__ == "__main__":
    main()
