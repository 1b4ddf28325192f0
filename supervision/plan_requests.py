"""The supervisor API as plan events: add_child, start_child, terminate_child, restart_child and delete_child, each checked before it changes anything.

`ChildRequests` is a part of `plan.Plan` (see plan.py for OTP's rules); a refused request is
answered with a typed error and leaves the plan as it was.
"""

from __future__ import annotations

from typing import Any

from supervision.errors import AlreadyPresent, ChildRunning, NoSuchName, SpecError, StartFailed, SupervisionError
from supervision.plan_events import AddChild, DeleteChild, RestartChild, StartDynamic, TerminateChild
from supervision.plan_table import Child, StartStep, StopStep
from supervision.specs import ChildSpec, SupervisorSpec, validate_name


class ChildRequests:
    """Requests about children (dynamic or static), for `Plan`."""

    def _refuse(self, requester: Any, error: SupervisionError) -> None:
        self._reply(requester, error=error)

    def _accepting(self, requester: Any) -> bool:
        if self.phase in ("stopping", "exiting", "stopped"):
            self._refuse(requester, StartFailed(self.name, f"{self.name} is stopping"))
            return False
        return True

    def _on_AddChild(self, event: AddChild) -> None:
        if not self._accepting(event.requester):
            return
        if self.strategy == "simple_one_for_one":
            self._refuse(event.requester, SpecError(f"{self.name}.add_child", "a simple_one_for_one supervisor starts children with start_child"))
            return
        if not isinstance(event.spec, (ChildSpec, SupervisorSpec)):
            self._refuse(event.requester, SpecError("AddChild.spec", f"must be a ChildSpec or SupervisorSpec; got {type(event.spec).__name__}"))
            return
        if event.spec.significant and self.spec.auto_shutdown == "never":
            self._refuse(event.requester, SpecError("AddChild.spec.significant", f"{self.name} has auto_shutdown='never'"))
            return
        existing = self.children.get(event.spec.name)
        if existing is not None:
            self._refuse(event.requester, AlreadyPresent(existing.name, self.name, existing.alive))
            return
        child = self._add(event.spec, dynamic=True, restart=event.restart)
        self.steps.append(StartStep(child.name, "dynamic", event.requester))

    def _on_StartDynamic(self, event: StartDynamic) -> None:
        if not self._accepting(event.requester):
            return
        if self.strategy != "simple_one_for_one":
            self._refuse(
                event.requester,
                SpecError(
                    f"{self.name}.start_child",
                    f"{self.name} is {self.strategy}; start_child with args needs simple_one_for_one (use add_child(spec))",
                ),
            )
            return
        if not isinstance(event.args, tuple) or not isinstance(event.kwargs, dict):
            self._refuse(event.requester, SpecError("StartChild.args", "args must be a tuple and kwargs a dict"))
            return
        try:
            name = None if event.name is None else validate_name(event.name, "StartChild.name")
        except SpecError as exc:
            self._refuse(event.requester, exc)
            return
        if name is not None and name in self.children:
            self._refuse(event.requester, AlreadyPresent(name, self.name, self.children[name].alive))
            return
        child = self._add(self._from_template(name, event.args, event.kwargs), dynamic=True)
        self.steps.append(StartStep(child.name, "dynamic", event.requester))

    def _on_TerminateChild(self, event: TerminateChild) -> None:
        child = self.children.get(event.name)
        if child is None:
            self._refuse(event.requester, NoSuchName(event.name, f"it is not a child of {self.name}"))
            return
        # OTP: a temporary child or a simple_one_for_one child is deleted; any other keeps its
        # spec, stopped, until restart_child or delete_child
        remove = self.strategy == "simple_one_for_one" or child.restart == "temporary"
        if not child.alive and not self._queued_start(child.name):
            child.status = "stopped"  # a pending decision about it no longer applies
            self._remove(child) if remove else self._report(child)
            self._reply(event.requester, None)
            return
        self.steps.append(StopStep(child.name, "shutdown", remove=remove, requester=event.requester))

    def _queued_start(self, name: str) -> bool:
        return any(isinstance(s, StartStep) and s.name == name for s in self.steps)

    def _on_RestartChild(self, event: RestartChild) -> None:
        child = self._stopped_child(event.name, event.requester, "restart_child")
        if child is not None and self._accepting(event.requester):
            self.steps.append(StartStep(child.name, "manual", event.requester))

    def _on_DeleteChild(self, event: DeleteChild) -> None:
        child = self._stopped_child(event.name, event.requester, "delete_child")
        if child is not None:
            self._remove(child)
            self._reply(event.requester, None)

    def _stopped_child(self, name: str, requester: Any, what: str) -> Child | None:
        if self.strategy == "simple_one_for_one":
            self._refuse(requester, SpecError(f"{self.name}.{what}", "simple_one_for_one children are not kept when stopped; start_child a new one"))
            return None
        child = self.children.get(name)
        if child is None:
            self._refuse(requester, NoSuchName(name, f"it is not a child of {self.name}"))
            return None
        if child.status != "stopped" or self._queued_start(name):
            self._refuse(requester, ChildRunning(name, self.name, child.status))
            return None
        return child
