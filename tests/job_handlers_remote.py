"""Job handlers that only the job tree's processes import (never the test process): the
enqueuing side must not need them (issue 15)."""

from __future__ import annotations

from actors.jobs import job


@job("remote_resize", queue="default", max_attempts=7)
def remote_resize(payload):
    return None
