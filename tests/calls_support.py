"""Actors for the calling tests (errors as values, timeouts, dead letters): module level, so they
pickle across processes."""

from __future__ import annotations

import json
import os
import threading
import time
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
        if message == "unpicklable-error":
            raise Unpicklable("a recoverable error with a lock", lock=threading.Lock())
        if message == "pid":
            return os.getpid()
        if message == "ping":
            return "pong"
        return super().handle(message)


class Unpicklable(Recoverable):
    """A Recoverable with a field that does not pickle (only simple fields travel)."""
