"""The demo's job handlers (imported by the demo's worker processes)."""

from __future__ import annotations

import random
import time

from actors.jobs import job
from supervision import Recoverable


@job("demo.thumbnail", limit_key="images", retry_min=0.05, retry_max=0.2)
def thumbnail(payload):
    """Resize an image: a few milliseconds, at most 4 at once cluster-wide (the limiter)."""
    time.sleep(payload.get("ms", 3) / 1000)


@job("demo.email", max_attempts=3, retry_min=0.05, retry_max=0.2)
def email(payload):
    """Send a message; the mail server refuses one in ten attempts (retried)."""
    if random.random() < 0.1:
        raise Recoverable("mail server busy")
    time.sleep(0.001)


@job("demo.report")
def report(payload):
    sum(range(payload.get("n", 1000)))


@job("demo.upload", max_attempts=2, retry_min=0.05, retry_max=0.1)
def upload(payload):
    """Always fails: the bucket does not exist (so some jobs end failed, with their error)."""
    raise ConnectionError(f"bucket {payload.get('bucket', '?')!r} does not exist")
