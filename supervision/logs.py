"""Loggers that work inside thespian's actor processes.

thespian replaces the logging root *and manager* in every actor process it starts, so a logger
object created at import time (in the parent, before the fork) still points at the parent's
handlers. `logger(name)` returns a proxy that looks the logger up at each call instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

#: the format of every log line, in the actor processes and in the program's own
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(logging.getLogger(self.name), attribute)


def logger(name: str) -> Any:
    return _LazyLogger(name)


def interactive() -> bool:
    """Is this a REPL (python -i, plain `python`, IPython, Jupyter)? Log lines written from
    other processes land in the middle of its prompt."""
    return bool(getattr(sys, "ps1", None)) or bool(sys.flags.interactive) or "IPython" in sys.modules


def default_level() -> str:
    """WARNING, or ERROR in a REPL: there, restarts the user caused (`rt.kill`) and other
    warnings stay quiet, and a crash is still shown with its traceback."""
    return "ERROR" if interactive() else "WARNING"


def configure_this_process(level: str | int, log_file: str | os.PathLike | None = None) -> None:
    """Give this process's loggers the runtime's level and destination, unless the program set
    up logging itself (the root logger has handlers). Without it Python's last-resort handler
    prints every WARNING to stderr (psycopg's pool warnings even with log_level="CRITICAL")."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_thespian_otp", False)]
    if root.handlers and not ours:
        return
    for handler in ours:
        root.removeHandler(handler)
    handler: logging.Handler = logging.FileHandler(os.fspath(log_file)) if log_file else logging.StreamHandler(sys.stderr)
    handler._thespian_otp = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root.addHandler(handler)
    if root.getEffectiveLevel() > handler.level:
        root.setLevel(handler.level)
