"""Actors used by the benchmarks (module level, so multiproc bases can pickle them)."""

from __future__ import annotations

import attrs

from supervision import Answer, Server


class Echo(Server):
    def handle(self, message):
        return message


class Counter(Server):
    """Counts every message; answers "count" with the total."""

    def init(self) -> None:
        self.count = 0

    def handle(self, message):
        if message == "count":
            return self.count
        self.count += 1
        return None


@attrs.frozen
class Blast:
    """Send `count` tells to `target`: by name, or to `address` directly (the raw baseline)."""

    target: str
    count: int
    address: object = None


class Driver(Server):
    """Sends a burst of tells from inside an actor, then answers once the target has them all."""

    def handle(self, message):
        if isinstance(message, Blast):
            if message.address is None:
                for _ in range(message.count):
                    self.tell(message.target, "x")
            else:
                for _ in range(message.count):
                    self.send(message.address, "x")
            reply = self.defer()
            # the count request travels after the burst on the same connection, so it is
            # answered once every tell above was handled
            self.ask(message.target, "count", timeout=120, then=lambda answer: self._done(reply, answer))
            return None
        return message

    def _done(self, reply, answer: Answer) -> None:
        self.reply(reply, answer.unwrap())
