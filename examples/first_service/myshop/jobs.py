"""Background jobs of the shop. Worker processes import this module by name ("myshop.jobs")."""

import json
import os
import time
from pathlib import Path

from actors.jobs import current_job, job


@job("shop.send_receipt", max_attempts=3, limit_key="mail")
def send_receipt(payload):
    # stands in for a mail server that takes 2 connections at most: the limiter's "mail" key
    # hands out 2 permits, across every worker process. Each receipt lands in the outbox
    # directory with the times its sending began and ended, so the app can see the limit hold.
    began = time.time()
    time.sleep(0.2)
    receipt = {**payload, "began": began, "ended": time.time()}
    job_now = current_job()
    name = f"receipt-{job_now.id}-{job_now.attempt}.json"
    (Path(os.environ["MYSHOP_OUTBOX"]) / name).write_text(json.dumps(receipt))
