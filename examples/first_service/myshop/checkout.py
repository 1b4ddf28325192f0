"""The shop's own actors: a price list, and a checkout that asks the price list by name."""

import myshop.jobs  # noqa: F401 - registers the job kinds here too: enqueue checks them
from actors.jobs import enqueue_from
from actors.stores import DatabaseConfig
from actors.stores.database import Database
from actors.stores.events import PgEventStore
from actors.stores.rows import NewEvent
from supervision import Recoverable, Server


class UnknownItem(Recoverable):
    """Bad input: replied to the caller as this typed error; the actor keeps running."""

    def __init__(self, item):
        super().__init__(f"no price for {item!r}", item=item)


class Prices(Server):
    def init(self, prices):
        self.prices = dict(prices)

    def handle(self, message):
        if isinstance(message, tuple) and message[:1] == ("price",):
            item = message[1]
            if item not in self.prices:
                raise UnknownItem(item)
            return self.prices[item]
        return super().handle(message)  # UnknownMessage, also a Recoverable


class Checkout(Server):
    """("order", customer, item, quantity) -> the total in cents. It asks "prices" by name
    (found again after a restart), records the order as an event and enqueues the receipt."""

    def init(self, database: DatabaseConfig):
        self.events = PgEventStore(Database(database))

    def handle(self, message):
        if isinstance(message, tuple) and message[:1] == ("order",):
            _, customer, item, quantity = message
            reply = self.defer()  # answer later, without blocking this actor
            self.ask("prices", ("price", item), then=lambda answer: self.priced(reply, customer, quantity, answer))
            return None
        return super().handle(message)

    def priced(self, reply, customer, quantity, answer):
        if not answer.ok:  # the price list's error goes back to whoever ordered
            self.reply_error(reply, answer.error.to_exception())
            return
        cents = answer.value * quantity
        self.events.append([NewEvent("shop.order_placed", {"customer": customer, "cents": cents})])
        enqueue_from(self, "shop.send_receipt", {"customer": customer, "cents": cents})
        self.reply(reply, cents)
