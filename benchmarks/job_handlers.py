"""No-op job handlers for the benchmarks."""

from actors.jobs import job


@job("noop")
def noop(payload):
    return None
