"""Shared fixtures: real actor systems (stopped and checked for leftovers after each test)."""

from __future__ import annotations

import pytest

from supervision import Runtime
from supervision.liveness import group_members


@pytest.fixture
def make_runtime():
    """Create runtimes that are always stopped, and check that no actor process outlives them."""
    created: list[Runtime] = []

    def make(base: str = "multiprocTCPBase", **kwargs) -> Runtime:
        kwargs.setdefault("log_level", "ERROR")
        runtime = Runtime(base, **kwargs)
        created.append(runtime)
        return runtime

    yield make
    for runtime in created:
        group = runtime._group
        runtime.stop()
        if group is not None:
            assert group_members(group) == [], "actor processes outlived the runtime"
