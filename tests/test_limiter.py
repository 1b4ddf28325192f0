"""The limiter actor with real processes: docs/design.md story 1, dead owners, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from actors.limiter import Acquire, Configure, Held, Limit, Limiter, LimiterServer, LimitTimeout, Owner, Release, Stats, UnknownLease
from supervision import BadRequest, ChildSpec, DeadLetter, NoSuchName, SupervisionError, SupervisorSpec
from supervision.liveness import ProcessIdentity
from tests.support import MULTIPROC_BASES, Echo, PermitHolder, wait_for


def tree(limits=None):
    return SupervisorSpec(
        "root",
        intensity=100,
        period=1.0,
        children=[
            ChildSpec("limiter", LimiterServer, kwargs={"limits": limits or {"db": Limit(2)}, "default": Limit(5)}),
            ChildSpec("pager", Echo),
            ChildSpec("holder", PermitHolder),
        ],
    )


def held(rt, key="db"):
    return sum(s.held for s in rt.ask("limiter", Stats()) if s.key == key)


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_story_1_a_kept_handle_survives_fifty_kills_of_the_limiter(make_runtime, base):
    rt = make_runtime(base).start(tree())
    limiter = Limiter(rt)  # kept in a reusable query context: a name, never an address
    returned: list[bool] = []  # what each release said: True when the granting limiter took it back

    def paginated_query():
        rows = []
        for page in range(3):
            lease = limiter.acquire("db", timeout=5)
            try:
                rows.append(rt.ask("pager", page))
            finally:
                returned.append(limiter.release(lease))
        return rows

    assert paginated_query() == [0, 1, 2]
    errors: list[str] = []
    for _ in range(50):
        rt.kill("limiter")
        granted_before = len(returned)
        try:
            assert paginated_query() == [0, 1, 2]
        except SupervisionError as exc:
            errors.append(type(exc).__name__)  # allowed: a typed error, never a crash or a hang
        # every permit of this incarnation went back to it: it holds none before the next kill
        assert held(rt) == 0, "a permit leaked"
        assert all(returned[granted_before:]), "a permit was released to a limiter that did not grant it"
    # the only errors a restart may cause: the name is between two limiters, or the old one died
    assert set(errors) <= {"DeadLetter", "NoSuchName"}, errors
    assert len(errors) <= 5, errors
    assert rt.tree()["limiter"].restarts == 50


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_permits_of_an_owner_actor_that_is_killed_come_back(make_runtime, base):
    rt = make_runtime(base).start(tree({"db": Limit(1)}))
    assert rt.ask("holder", ("hold", "db"))
    assert held(rt) == 1
    limiter = Limiter(rt)
    with pytest.raises(LimitTimeout):
        limiter.acquire("db", timeout=0.2)
    rt.kill("holder")
    started = time.monotonic()
    wait_for(lambda: held(rt) == 0, timeout=5, what="the dead owner's permit back")
    released_after = time.monotonic() - started
    assert released_after < 2.0
    with limiter.permit("db", timeout=2):
        assert held(rt) == 1


def test_permits_of_an_owner_process_that_is_killed_come_back(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree({"db": Limit(1)}))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = Owner(f"process:{sleeper.pid}", ProcessIdentity.of(sleeper.pid))
        assert rt.ask("limiter", Acquire("db", owner, timeout=2))
        assert held(rt) == 1
        os.kill(sleeper.pid, signal.SIGKILL)
        sleeper.wait()
        wait_for(lambda: held(rt) == 0, timeout=5, what="the dead process's permit back")
    finally:
        sleeper.kill()


def test_a_lease_with_a_timeout_comes_back_by_itself(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree({"db": Limit(1)}))
    limiter = Limiter(rt)
    limiter.acquire("db", lease_timeout=0.3)
    wait_for(lambda: held(rt) == 0, timeout=5, what="the lease to expire")
    assert limiter.acquire("db", timeout=1)


def test_releasing_a_lease_after_the_limiter_restarted_is_a_typed_error_not_a_crash(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree())
    limiter = Limiter(rt)
    lease = limiter.acquire("db")
    rt.kill("limiter")
    assert limiter.release(lease) is False  # the fresh limiter does not know it
    with pytest.raises(UnknownLease):
        rt.ask("limiter", Release(lease.id))
    node = wait_for(lambda: rt.tree().find("limiter"))
    assert node.restarts == 1


def test_bad_input_gets_typed_replies_and_never_restarts_the_limiter(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree())
    owner = Owner.this_process()
    bad = [
        Acquire(123, owner),
        Acquire("db", owner, timeout=-1),
        Acquire("db", owner, timeout="soon"),
        Acquire("db", "not an owner"),
        Acquire("db", owner, lease_timeout=0),
        Release("no-such-lease"),
        Release(None),
        Configure("db", "four"),
        "what is this",
    ]
    for message in bad:
        with pytest.raises(SupervisionError) as info:
            rt.ask("limiter", message)
        assert isinstance(info.value, (BadRequest, UnknownLease)) or type(info.value).__name__ == "UnknownMessage", info.value
    with pytest.raises(BadRequest):
        rt.ask("limiter", Configure("db", Limit(-4)))  # rejected where the Limit is built
    assert rt.tree()["limiter"].restarts == 0
    assert Limiter(rt).acquire("db", timeout=1)


def test_fifo_waiters_and_configuring_a_higher_limit_grants_them(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree({"db": Limit(1)}))
    limiter = Limiter(rt)
    limiter.acquire("db")
    with pytest.raises(LimitTimeout, match="'db'"):
        limiter.acquire("db", timeout=0.3)
    rt.ask("limiter", Configure("db", Limit(2)))
    assert limiter.acquire("db", timeout=1)
    assert len(rt.ask("limiter", Held("db"))) == 2


def test_the_handle_refuses_blocking_calls_inside_actors_and_unknown_targets():
    with pytest.raises(TypeError):
        Limiter("not a runtime")


def test_no_such_limiter_is_a_typed_error(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[ChildSpec("echo", Echo)]))
    with pytest.raises((NoSuchName, DeadLetter)):
        Limiter(rt).acquire("db", timeout=0.5)


def test_a_typo_in_a_key_is_an_unknown_limit_key_unless_the_limiter_has_a_default(make_runtime):
    from actors.limiter import UnknownLimitKey

    strict = ChildSpec("strict", LimiterServer, kwargs={"limits": {"images": Limit(2)}})
    lenient = ChildSpec("lenient", LimiterServer, kwargs={"limits": {"images": Limit(2)}, "default": Limit(3)})
    rt = make_runtime("multiprocTCPBase").start(SupervisorSpec("root", children=[strict, lenient]))
    with pytest.raises(UnknownLimitKey, match="'imagse'.*configured: 'images'") as info:
        with Limiter(rt, "strict").permit("imagse", timeout=1):
            pass
    assert info.value.key == "imagse"
    assert rt.ask("strict", Stats())[0].key == "images" and len(rt.ask("strict", Stats())) == 1  # nothing created
    with Limiter(rt, "strict").permit("images", timeout=1):
        pass
    with Limiter(rt, "lenient").permit("imagse", timeout=1) as lease:
        assert lease.key == "imagse"  # an explicit default covers every other key
    assert rt.tree()["strict"].restarts == 0


@pytest.mark.parametrize("base", MULTIPROC_BASES)
def test_a_forged_down_from_a_caller_releases_nothing(make_runtime, base):
    from supervision import Down, SystemMessageRefused

    rt = make_runtime(base).start(tree({"db": Limit(1)}))
    assert rt.ask("holder", ("hold", "db"))
    with pytest.raises(SystemMessageRefused, match="Down"):
        rt.ask("limiter", Down("holder", "killed"))
    rt.tell("limiter", Down("holder", "noproc"))  # refused too, with nobody to tell
    assert held(rt) == 1  # the holder's permit is still out
    with pytest.raises(LimitTimeout):
        Limiter(rt).acquire("db", timeout=0.2)
    assert rt.tree()["limiter"].restarts == 0


def test_keys_only_the_default_covers_are_forgotten_once_released(make_runtime):
    rt = make_runtime("multiprocTCPBase").start(tree())
    limiter = Limiter(rt)
    for i in range(300):
        with limiter.permit(f"user-{i}", timeout=2):
            pass
    with limiter.permit("user-last", timeout=2):
        assert {s.key for s in rt.ask("limiter", Stats())} == {"db", "user-last"}
    assert {s.key for s in rt.ask("limiter", Stats())} == {"db"}  # nothing kept per key ever seen
