"""The registry: names belong to living actors, never overwritten, gone when their actor dies."""

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from supervision.errors import AlreadyRegistered
from supervision.messages import RegistryEntry
from supervision.registry import Registry


class FakeIdentity:
    """Stands in for a process identity; `alive` is flipped by the test."""

    def __init__(self):
        self.alive = True

    def is_alive(self):
        return self.alive


def entry(name, address, supervisor="root", kind="worker", identity=None):
    return RegistryEntry(name, address, identity or FakeIdentity(), supervisor, kind, "X")


def test_registering_a_name_held_by_a_live_actor_is_an_error():
    registry = Registry()
    registry.register(entry("a", "addr1"))
    with pytest.raises(AlreadyRegistered, match="'a'"):
        registry.register(entry("a", "addr2"))
    assert registry.lookup("a").address == "addr1"


def test_a_dead_holder_is_replaced_and_reported():
    registry = Registry()
    old = entry("a", "addr1")
    registry.register(old)
    old.identity.alive = False
    replaced = registry.register(entry("a", "addr2"))
    assert [e.address for e in replaced] == ["addr1"]
    assert registry.lookup("a").address == "addr2"


def test_unregister_only_removes_the_current_holder():
    registry = Registry()
    registry.register(entry("a", "addr2"))
    assert registry.remove("a", "addr1") == []
    assert registry.lookup("a") is not None


def test_a_dead_supervisor_takes_its_dead_childrens_entries_with_it():
    registry = Registry()
    registry.register(entry("sup", "s1", kind="supervisor"))
    child = entry("w", "w1", supervisor="sup")
    registry.register(child)
    child.identity.alive = False
    removed = registry.remove("sup", "s1")
    assert {e.name for e in removed} == {"sup", "w"}


def test_watches_fire_once():
    registry = Registry()
    registry.register(entry("a", "addr1"))
    assert registry.watch("a", "watcher")
    assert registry.take_watchers("a") == ["watcher"]
    assert registry.take_watchers("a") == []
    assert not registry.watch("nobody", "watcher")


class RegistryMachine(RuleBasedStateMachine):
    """The registry against a dict model, with actors dying at random."""

    @initialize()
    def setup(self):
        self.registry = Registry()
        self.model: dict[str, tuple[str, FakeIdentity]] = {}
        self.counter = 0

    names = st.sampled_from(["a", "b", "c", "d"])

    @rule(name=names)
    def register(self, name):
        self.counter += 1
        address = f"addr{self.counter}"
        identity = FakeIdentity()
        holder = self.model.get(name)
        if holder is not None and holder[1].alive:
            with pytest.raises(AlreadyRegistered):
                self.registry.register(entry(name, address, identity=identity))
            return
        self.registry.register(entry(name, address, identity=identity))
        self.model[name] = (address, identity)

    @rule(name=names)
    def the_holder_dies(self, name):
        if name in self.model:
            self.model[name][1].alive = False

    @rule(name=names)
    def the_supervisor_unregisters_it(self, name):
        if name in self.model:
            address = self.model[name][0]
            removed = self.registry.remove(name, address)
            assert [e.address for e in removed] == [address]
            del self.model[name]
            self.registry.take_watchers(name)  # the monitor sends Down to its watchers

    @rule(name=names)
    def a_stale_unregister_changes_nothing(self, name):
        assert self.registry.remove(name, "addr-never") == []

    @rule()
    def sweep(self):
        for dead in self.registry.dead_entries():
            self.registry.remove(dead.name, dead.address)
            self.registry.take_watchers(dead.name)
        self.model = {n: v for n, v in self.model.items() if v[1].alive}

    @rule(name=names, watcher=names)
    def one_actor_watches_another(self, name, watcher):
        if watcher in self.model:
            self.registry.watch(name, self.model[watcher][0])

    @invariant()
    def watches_belong_to_registered_watchers_of_registered_names(self):
        live = {address for address, _ in self.model.values()}
        for name, watchers in self.registry.watchers.items():
            assert name in self.registry.entries
            assert set(watchers.values()) <= live, "a watch outlived its watcher's entry"
        assert self.registry.watch_count() == sum(len(names) for names in self.registry.watching.values())

    @invariant()
    def lookups_match_the_model(self):
        for name in ("a", "b", "c", "d"):
            found = self.registry.lookup(name)
            expected = self.model.get(name)
            assert (found.address if found else None) == (expected[0] if expected else None)


TestRegistry = RegistryMachine.TestCase


def test_the_watches_of_an_actor_go_with_its_entry():
    registry = Registry()
    registry.register(entry("callee", "c1"))
    for restart in range(200):  # a caller restarted 200 times, each incarnation watching the callee
        caller = f"caller-addr-{restart}"
        registry.register(entry("caller", caller))
        assert registry.watch("callee", caller)
        registry.remove("caller", caller)
    assert registry.watch_count() == 0 and registry.watching == {}
    assert registry.take_watchers("callee") == []


def test_a_watch_is_kept_once_per_watcher_and_dropped_with_its_name():
    registry = Registry()
    registry.register(entry("callee", "c1"))
    registry.register(entry("caller", "w1"))
    for _ in range(100):
        registry.watch("callee", "w1")  # every lookup watches: still one watch
    assert registry.watch_count() == 1
    assert registry.take_watchers("callee") == ["w1"]
    assert registry.watch_count() == 0 and registry.watching == {}
    assert registry.name_of("w1") == "caller" and registry.name_of("nobody") is None
