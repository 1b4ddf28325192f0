"""Actors for the calling tests (errors as values, timeouts, dead letters): module level, so they
pickle across processes."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import attrs

from supervision import Answer, Recoverable, Server


@attrs.frozen
class ReplyError:
    """Ask `Faulty` to reply with an error of this kind: "value", "json", "local"."""

    kind: str


class Faulty(Server):
    """Replies errors of many types, crashes on request, replies values that do not pickle."""

    def handle(self, message: Any) -> Any:
        if isinstance(message, ReplyError):
            reply = self.defer()
            if message.kind == "value":
                self.reply_error(reply, ValueError("not a number: 'x'"))
            elif message.kind == "json":
                try:
                    json.loads("{broken")
                except json.JSONDecodeError as exc:
                    self.reply_error(reply, exc)
            elif message.kind == "local":
                class LocalOnly(Exception):
                    pass

                self.reply_error(reply, LocalOnly("defined inside a function"))
            return None
        if message == "crash-value":
            raise ValueError("a bad value inside the handler")
        if message == "lookup":
            return {}["missing"]  # a KeyError: a crash
        if message == "unpicklable":
            return threading.Lock()
        if message == "unpicklable-lambda":
            return lambda: "not picklable"
        if message == "unpicklable-generator":
            return (i for i in range(3))
        if message == "unpicklable-nested":
            return {"rows": [1, 2], "cursor": threading.Lock()}
        if message == "unpicklable-error":
            raise Unpicklable("a recoverable error with a lock", lock=threading.Lock())
        if message == "pid":
            return os.getpid()
        if message == "ping":
            return "pong"
        return super().handle(message)


class Unpicklable(Recoverable):
    """A Recoverable with a field that does not pickle (only simple fields travel)."""


def define_late(name: str, bases: tuple = (), namespace: dict | None = None) -> type:
    """Define a class in this module *now* (after the runtime started): the actor system's
    processes, forked earlier, cannot unpickle it."""
    import sys

    cls = type(name, bases, {"__module__": __name__, **(namespace or {})})
    cls.__qualname__ = name
    setattr(sys.modules[__name__], name, cls)
    return cls


def late_handle(self, message):
    return message


@attrs.frozen
class Via:
    """Ask `Deferring` to ask `target` for `message` and answer later, the way `how` says:
    "unwrap" (the README's pattern), "forward" (`reply_to=`), "boom" (a bug in the callback)."""

    how: str
    target: str
    message: Any


class Deferring(Server):
    """Answers requests later, from the answer of an ask to another actor."""

    def handle(self, message: Any) -> Any:
        if isinstance(message, Via):
            if message.how == "forward":
                self.ask(message.target, message.message, reply_to=self.defer())
                return None
            reply = self.defer()
            if message.how == "unwrap":
                self.ask(message.target, message.message, then=lambda a: self.reply(reply, a.unwrap()))
            elif message.how == "boom":
                self.ask(message.target, message.message, then=lambda a: 1 / 0)
            elif message.how == "handle":
                self.pending = reply
                self.ask(message.target, message.message)  # the Answer comes to handle
            return None
        if isinstance(message, Answer):
            self.reply(self.pending, message.unwrap())
            return None
        if message == "pid":
            return os.getpid()
        return super().handle(message)


@attrs.frozen
class TellTo:
    """Ask `Teller` to tell `target` a message (with `notify`)."""

    target: str
    message: Any
    notify: bool = False


class Teller(Server):
    """Tells other actors by name, and keeps the `Undelivered` notices it gets back."""

    def init(self) -> None:
        self.notices: list = []

    def handle(self, message: Any) -> Any:
        from supervision.messages import Undelivered

        if isinstance(message, TellTo):
            self.tell(message.target, message.message, notify=message.notify)
            return "sent"
        if isinstance(message, Undelivered):
            self.notices.append((message.target, message.message_type, message.message))
            return None
        if message == "notices":
            return list(self.notices)
        return super().handle(message)
