"""Loggers that work inside thespian's actor processes.

thespian replaces the logging root *and manager* in every actor process it starts, so a logger
object created at import time (in the parent, before the fork) still points at the parent's
handlers. `logger(name)` returns a proxy that looks the logger up at each call instead.
"""

from __future__ import annotations

import logging
from typing import Any


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(logging.getLogger(self.name), attribute)


def logger(name: str) -> Any:
    return _LazyLogger(name)
