"""Background jobs of the shop. Worker processes import this module by name ("myshop.jobs")."""

import time

from actors.jobs import job


@job("shop.send_receipt", max_attempts=3, limit_key="mail")
def send_receipt(payload):
    # talks to a mail server that takes 2 connections at most: the limiter's "mail" key
    # hands out 2 permits, across every worker process
    time.sleep(0.05)
