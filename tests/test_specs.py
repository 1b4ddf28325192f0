"""Specs are validated where they are written, with an error that names the field."""

import pickle

import pytest

from supervision import Backoff, ChildSpec, Server, SpecError, SupervisorSpec


class Worker(Server):
    pass


class NotAServer:
    pass


def test_a_valid_tree_nests_supervisors_and_pickles():
    spec = SupervisorSpec(
        name="root",
        strategy="rest_for_one",
        children=[
            ChildSpec("a", Worker),
            SupervisorSpec("inner", children=[ChildSpec("b", Worker, restart="transient", shutdown="brutal_kill")]),
        ],
    )
    assert [name for name, _ in spec.walk()] == ["root", "a", "inner", "b"]
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_child_spec_accepts_an_import_path_for_the_actor():
    spec = ChildSpec("w", "tests.test_specs:Worker")
    assert spec.actor is Worker


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="", actor=Worker), "ChildSpec.name"),
        (dict(name="bad name", actor=Worker), "ChildSpec.name"),
        (dict(name=3, actor=Worker), "ChildSpec.name"),
        (dict(name="w", actor=NotAServer), "actor"),
        (dict(name="w", actor="no.such.module:X"), "actor"),
        (dict(name="w", actor=Worker, restart="sometimes"), "restart"),
        (dict(name="w", actor=Worker, shutdown=-1), "shutdown"),
        (dict(name="w", actor=Worker, shutdown="later"), "shutdown"),
        (dict(name="w", actor=Worker, shutdown=float("nan")), "shutdown"),
        (dict(name="w", actor=Worker, args=5), "args"),
        (dict(name="w", actor=Worker, start_timeout=0), "start_timeout"),
    ],
)
def test_invalid_child_specs_fail_at_construction_naming_the_field(kwargs, field):
    with pytest.raises(SpecError) as info:
        ChildSpec(**kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(strategy="one_for_some"), "strategy"),
        (dict(intensity=-1), "intensity"),
        (dict(intensity=1.5), "intensity"),
        (dict(period=0), "period"),
        (dict(backoff=3), "backoff"),
        (dict(children=[object()]), "children[0]"),
        (dict(children=[ChildSpec("a", Worker), ChildSpec("a", Worker)]), "duplicate name 'a'"),
        (dict(strategy="simple_one_for_one", children=[]), "exactly one child spec"),
    ],
)
def test_invalid_supervisor_specs_fail_at_construction_naming_the_field(kwargs, field):
    with pytest.raises(SpecError) as info:
        SupervisorSpec(name="root", **kwargs)
    assert field in str(info.value)


def test_duplicate_names_are_found_anywhere_in_the_tree():
    with pytest.raises(SpecError, match="duplicate name 'x'"):
        SupervisorSpec("root", children=[ChildSpec("x", Worker), SupervisorSpec("s", children=[ChildSpec("x", Worker)])])
    with pytest.raises(SpecError, match="duplicate name 'root'"):
        SupervisorSpec("root", children=[ChildSpec("root", Worker)])


@pytest.mark.parametrize(
    "kwargs, field",
    [(dict(min=-1), "min"), (dict(min=2, max=1), "max"), (dict(jitter=2), "jitter"), (dict(jitter=True), "jitter")],
)
def test_invalid_backoff_fails_naming_the_field(kwargs, field):
    with pytest.raises(SpecError, match=field):
        Backoff(**kwargs)


def test_backoff_first_restart_is_immediate_then_grows_to_max():
    backoff = Backoff(min=0.1, max=1.0, jitter=0)
    assert [backoff.delay(k) for k in (1, 2, 3, 4, 5, 6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_shutdown_budget_of_a_supervisor_covers_its_children():
    spec = SupervisorSpec(
        "root", children=[ChildSpec("a", Worker, shutdown=2.0), ChildSpec("b", Worker, shutdown="brutal_kill")]
    )
    assert spec.shutdown_budget == pytest.approx((2.0 + 1.0) + (0.0 + 1.0) + 1.0 + 1.0)
