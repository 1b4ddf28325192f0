"""A read model: orders and money per customer, folded from the shop's own events."""

from actors.projector import Projection


class SalesPerCustomer(Projection):
    name = "sales_per_customer"
    event_types = ("shop.order_placed",)

    def setup(self, conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sales_per_customer ("
            " customer text PRIMARY KEY, orders bigint NOT NULL, cents bigint NOT NULL)"
        )

    def reset(self, conn):
        conn.execute("TRUNCATE sales_per_customer")

    def apply(self, conn, events):
        # runs in the projector's transaction, with its checkpoint: never twice, never skipped
        for event in events:
            conn.execute(
                "INSERT INTO sales_per_customer AS s (customer, orders, cents) VALUES (%s, 1, %s)"
                " ON CONFLICT (customer) DO UPDATE SET orders = s.orders + 1, cents = s.cents + excluded.cents",
                (event.data["customer"], event.data["cents"]),
            )
