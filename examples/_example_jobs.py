"""Job handlers for examples/job_completer.py (workers import them by module name)."""

import random
import time

from actors.jobs import job
from supervision import Recoverable


@job("resize", max_attempts=3, retry_min=0.05, retry_max=0.1)
def resize(payload):
    time.sleep(0.002)
    if random.random() < 0.05:
        raise Recoverable("image store busy, try again")


@job("notify")
def notify(payload):
    time.sleep(0.001)
