"""No-op job handlers for the benchmarks."""

from actors.jobs import job


@job("noop")
def noop(payload):
    return None


@job("sleep", timeout=600)
def sleep(payload):
    """For the rescue measurement (`benchmarks.peers`): a job long enough to be killed in."""
    import time

    time.sleep(float(payload.get("seconds", 60)))
