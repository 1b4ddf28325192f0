"""`Runtime`: the user's entry point. Start an actor system in process, start trees, talk to actors by name.

```python
with Runtime(base="multiprocTCPBase") as rt:
    rt.start(SupervisorSpec(name="root", children=[ChildSpec(name="echo", actor=Echo)]))
    rt.ask("echo", "hi", timeout=2.0)   # -> "hi"
```

Contracts (docs/design.md section 3):
- `ask` returns the reply or raises a typed error (`NoSuchName`, `DeadLetter`, `AskTimeout`,
  `ActorCrashed`, or the actor's own `Recoverable`): never `None` for a missing reply, never a
  wait past `timeout`.
- `stop()` (or leaving the `with` block) stops the trees in reverse order within the sum of
  their shutdown budgets and leaves no process of the actor system behind. Stopping twice is fine.
- the kernel never restarts a tree; `start(spec, restart=...)` says what its exit means (OTP's
  application types), and `wait()` tells the program when the runtime stopped, and why.
- the loss of the kernel or of thespian's admin process (SIGKILL, OOM killer) ends the runtime:
  a sentinel thread notices within `SENTINEL_INTERVAL`, kills what is left of the actor system
  and `wait()` raises `RuntimeLost`; every later call raises `RuntimeNotRunning` saying why.

Calls (ask, tell, whereis) and how a request travels: `supervision.calls`.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import threading
import time
import weakref
from typing import Any

from thespian.actors import ActorSystem
from thespian.actors import ExternalContext, InvalidActorAddress

from supervision import auth, bases, discovery, guard, logs, stackroom
from supervision.calls import LIVENESS_SLICE, Calls, reap_child
from supervision.clients import job_client
from supervision.logs import logger
from supervision.errors import (
    AskTimeout,
    ConfigError,
    NoSuchName,
    RuntimeExited,
    RuntimeLost,
    RuntimeNotRunning,
    SpecError,
    StartFailed,
    SupervisionError,
)
from supervision.introspect import ChildTable, Tree
from supervision.kernel import KERNEL_NAME, MONITOR_NAME, Kernel, kernel_spec
from supervision.liveness import ProcessIdentity, group_members
from supervision.messages import (
    AwaitExit,
    CountChildren,
    DeleteChild,
    GetBudget,
    GetChildspec,
    RestartChild,
    Envelope,
    GetTree,
    Init,
    InitFailed,
    Resolved,
    Shutdown,
    StartChild,
    Started,
    StartTree,
    StopTree,
    SystemContext,
    TerminateChild,
    WhichChildren,
)
from supervision.specs import RESTART_TYPES, ChildSpec, SupervisorSpec, validate_name
from supervision.supervisor import AddChild

log = logger("supervision.runtime")

#: How long the actor system may take to come up.
BOOT_TIMEOUT = 30.0
#: How long thespian's own shutdown may take before the runtime kills what is left.
SYSTEM_SHUTDOWN_TIMEOUT = 3.0
#: `wait()` asks the kernel in slices this long (a kernel that died is noticed between them).
WAIT_SLICE = 30.0
#: How long `shutdown_budget` waits for the kernel's figure.
BUDGET_TIMEOUT = 2.0
#: Seconds between the sentinel's checks that the kernel and thespian's admin still live.
SENTINEL_INTERVAL = 0.2


class Runtime(Calls):
    """An actor system in this process, its kernel, and the trees you start under it.

    Arguments:
    - `base`: "multiprocTCPBase" (default, recommended), "multiprocQueueBase" or
      "simpleSystemBase" (in-process, for unit tests).
    - `admin_port`: TCP base only; default: a free port on loopback. A port something already
      listens on is refused: the runtime never attaches to a system it did not start.
    - `intensity`, `period`: the kernel's restart limits for the runtime's monitor (trees are
      never restarted by the kernel: see `start(spec, restart=...)`).
    - `liveness_interval`: seconds between supervisors' checks of their children's processes
      (default 0.05 s on the queue base, 1 s elsewhere, where thespian reports exits itself).
    - `ask_timeout`: the default `ask` timeout.
    - `restart_wait`: an ask or tell to a name whose actor is being restarted waits up to this
      long (and at most half its timeout) for the new actor, instead of failing at once with
      `NoSuchName`. 0 disables the wait.
    - `log_level`, `log_file`: where the logs of the actors, and of this process unless it set
      up `logging` itself, go (default: warnings, to stderr; in a REPL only errors, so that
      lines from other processes do not land in the prompt).
    - `name`: publish this runtime (multiprocTCPBase) so other processes can attach to it:
      `thespian-otp tree --name NAME`, `Runtime.attach(NAME)`.
    - `listen`: the address thespian's TCP sockets bind (default 127.0.0.1: nothing is reachable
      from other hosts). Anything else needs `trusted_network=True`: thespian unpickles what
      arrives, so only a trusted network may reach it. Nodes of one application do not need
      it: they coordinate through PostgreSQL.
    - `secret`: every TCP frame is signed with it and checked before anything is unpickled
      (`supervision.auth`). Default: a fresh random one per runtime. Give every host that talks
      to this runtime the same one (like an Erlang cookie; `auth.read_secret_file(path)`).
    """

    def __init__(
        self,
        base: str = "multiprocTCPBase",
        *,
        admin_port: int | None = None,
        intensity: int = 3,
        period: float = 5.0,
        liveness_interval: float | None = None,
        ask_timeout: float = 5.0,
        restart_wait: float = 1.0,
        log_level: str | int | None = None,
        log_file: str | None = None,
        name: str | None = None,
        listen: str = bases.LOOPBACK,
        trusted_network: bool = False,
        secret: bytes | str | None = None,
    ) -> None:
        self.info = bases.base_info(base)
        self.base = self.info.name
        if name is not None:
            discovery.check_runtime_name(name, "name")
            if self.base != "multiprocTCPBase":
                raise ConfigError(f"name: only multiprocTCPBase runtimes can be attached to from other processes, not {self.base}")
        self.name = name
        self.listen = bases.check_listen(listen, trusted_network)
        self._secret = auth.check_secret(secret) if secret is not None else auth.new_secret()
        self._attached = False
        if admin_port is not None:
            if self.base != "multiprocTCPBase":
                raise ConfigError(f"admin_port: only multiprocTCPBase listens on a port, not {self.base}")
        self._requested_port = admin_port
        self.kernel_spec = kernel_spec(intensity, period)
        self.liveness_interval = _check_seconds("liveness_interval", liveness_interval or self.info.liveness_interval)
        self.ask_timeout = _check_seconds("ask_timeout", ask_timeout)
        self.restart_wait = 0.0 if restart_wait == 0 else _check_seconds("restart_wait", restart_wait)
        log_level = logs.default_level() if log_level is None else log_level
        self.log_defs = bases.log_defs(log_level, log_file)
        logs.configure_this_process(self.log_defs["handlers"]["main"]["level"], log_file)
        self.admin_port: int | None = None
        self._system: ActorSystem | None = None
        self._kernel: Any = None
        self._kernel_identity: ProcessIdentity | None = None
        self._group: int | None = None
        self._local = threading.local()
        self._contexts: list[ExternalContext] = []
        self._lock = threading.RLock()
        self._cache: dict[str, Resolved] = {}
        self._stale: dict[str, Any] = {}
        self._trees: dict[str, Any] = {}
        self._stopped = False
        self._budget: float | None = None
        self._exit: RuntimeExited | None = None
        #: thespian's admin process (the kernel's parent), watched by the sentinel with the kernel
        self._admin_identity: ProcessIdentity | None = None
        #: set when the runtime ends (stop, crash, loss): the sentinel thread ends with it
        self._ended = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._system is not None and not self._stopped

    def __enter__(self) -> "Runtime":
        self.boot()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def boot(self) -> "Runtime":
        """Start the actor system and the kernel (done for you by `start` and `with`)."""
        with self._lock:
            if self._stopped:
                raise RuntimeNotRunning("this runtime was stopped; create a new Runtime")
            if self._system is not None:
                return self
            if self.base == "multiprocTCPBase":
                bases.bind_to(self.listen)
            if not self.info.in_process:
                guard.install(ProcessIdentity.current())
                stackroom.install()  # before thespian forks its processes
            self._system = self._start_system()
            try:
                self._kernel = self._system.createActor(Kernel)
                self._start_kernel()
            except BaseException:
                self._shutdown_system()
                if self.base == "multiprocTCPBase":
                    auth.forget(self.admin_port)
                raise
            _live_runtimes.add(self)
            self._start_sentinel()
        return self

    #: how many admin ports a runtime that picks its own tries before it gives up
    PORT_ATTEMPTS = 3

    def _start_system(self) -> ActorSystem:
        """thespian's actor system, on a port of our choosing unless one was given. A port we
        picked can be taken by another program before thespian's admin binds it (thespian then
        waits 11 s for an admin that never answers): another port is tried. Whatever a failed
        attempt started (an admin that came up too late to answer, on a loaded machine) is
        killed with its process group, and its launcher reaped."""
        chosen = self.base == "multiprocTCPBase" and self._requested_port is None
        for attempt in range(1, (self.PORT_ATTEMPTS if chosen else 1) + 1):
            if self.base == "multiprocTCPBase":
                self.admin_port = bases.free_port(self.listen) if chosen else bases.check_port(self._requested_port, self.listen)
                auth.install(self._secret, self.admin_port, self.log_defs["handlers"]["main"])  # before thespian forks its processes
            caps = bases.capabilities(self.info, self.admin_port)
            with bases.admin_launches() as launched:
                try:
                    return ActorSystem(self.base, caps, logDefs=self.log_defs, transientUnique=True)
                except BaseException as exc:
                    if self.base == "multiprocTCPBase":
                        auth.forget(self.admin_port)
                    for launcher in launched:
                        _sweep_launch(launcher)
                    if not isinstance(exc, Exception):
                        raise
                    if isinstance(exc, InvalidActorAddress) and chosen and attempt < self.PORT_ATTEMPTS:
                        log.warning("no actor system answered on admin port %s (taken by another program, or too slow to start); trying another", self.admin_port)
                        continue
                    raise ConfigError(f"could not start the {self.base} actor system: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _start_sentinel(self) -> None:
        """Watch the kernel and thespian's admin from this process (multiproc bases): either
        dying ends the runtime (`_end_lost`), so that nothing of the system is left running and
        the program learns it from `wait()` or its next call."""
        kernel = self._kernel_identity
        if self.info.in_process or kernel is None:
            return
        import psutil  # as supervision.liveness does: only multiproc runtimes need it

        try:
            self._admin_identity = ProcessIdentity.of(psutil.Process(kernel.pid).ppid())
        except psutil.Error:
            self._admin_identity = None  # the kernel is gone already: the first check sees it
        watched = (self._admin_identity, kernel)
        thread = threading.Thread(
            target=_sentinel, args=(weakref.ref(self), self._ended, watched, SENTINEL_INTERVAL), name="thespian-otp-sentinel", daemon=True
        )
        thread.start()

    def _lost_process(self) -> tuple[str, int] | None:
        """(which, pid) of the runtime's own process that died (admin first: its death takes
        the kernel with it), or None while both live."""
        kernel, admin = self._kernel_identity, self._admin_identity
        if kernel is None or self._attached or self.info.in_process:
            return None
        if admin is not None and not admin.is_alive():
            return ("admin", admin.pid)
        if not kernel.is_alive():
            return ("kernel", kernel.pid)
        return None

    def _end_lost(self) -> RuntimeExited | None:
        """If the kernel or the admin died, end the runtime (once): kill what is left of the
        actor system, and keep the `RuntimeLost` that `wait()` raises. Returns the exit, if any."""
        with self._lock:
            if self._stopped:
                return self._exit
            lost = self._lost_process()
            if lost is None:
                return None
            self._exit = RuntimeLost(*lost)
            log.error("%s", self._exit)
            self._stopped = True
            self._ended.set()
            if self.name is not None and self._kernel_identity is not None:
                discovery.withdraw(self.name, self._kernel_identity.pid)
            leader = self._group
            # thespian's own shutdown would wait on the dead process: kill the group instead
            system, self._system = self._system, None
            self._close_contexts()
            _close_transport(system)
            self._sweep_group()
            auth.forget(self.admin_port)
            _live_runtimes.discard(self)
            reap_child(leader)
            return self._exit

    def _system_gone(self) -> RuntimeNotRunning:
        """The error of a call that found the kernel dead (the runtime is ended first)."""
        lost = self._end_lost()
        return RuntimeNotRunning(str(lost) if lost is not None else "the actor system is gone (its kernel process died)")

    def _start_kernel(self) -> None:
        context = SystemContext(
            base=self.base,
            kernel=self._kernel,
            monitor=None,
            owner=None if self.info.in_process else ProcessIdentity.current(),
            liveness_interval=self.liveness_interval,
            in_process=self.info.in_process,
        )
        ctx = self._context()
        ctx.tell(self._kernel, Init(KERNEL_NAME, self.kernel_spec, "", context))
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            message = ctx.listen(min(LIVENESS_SLICE, deadline - time.monotonic()))
            if isinstance(message, Started):
                self._kernel_identity = message.identity
                break
            if isinstance(message, InitFailed):
                raise StartFailed(KERNEL_NAME, message.error.message)
        else:
            raise StartFailed(KERNEL_NAME, f"the kernel did not start within {BOOT_TIMEOUT:g} s")
        if self._kernel_identity is not None:
            group = os.getpgid(self._kernel_identity.pid)
            self._group = group if group != os.getpgid(0) else None
            if self.name is not None:
                discovery.publish(
                    discovery.RuntimeRecord.make(
                        self.name, self.base, self.admin_port, self._kernel, self._kernel_identity, self.listen, self._secret
                    )
                )

    def start(
        self, spec: SupervisorSpec | ChildSpec | None = None, timeout: float | None = None, restart: str = "temporary"
    ) -> "Runtime":
        """Start the actor system if needed, then the tree `spec` under the kernel. Returns self.

        The kernel never restarts a tree (its own supervisor gave up, or it exited): `restart`
        says what its exit means, as OTP's application types do:
        - "temporary" (default): the exit is logged and shown in `tree()` (stopped, with its
          cause); the tree's names are gone (`NoSuchName`); the rest runs on.
        - "transient": an exit with any reason but "normal" stops the runtime (every other
          tree in reverse order); `wait()` then raises `RuntimeExited`. As for OTP applications,
          "shutdown" (a supervisor that gave up) counts as abnormal here.
        - "permanent": any exit stops the runtime.

        Raises `StartFailed` (with the reason) if any child's `init` fails; nothing of that tree
        is left running."""
        if restart not in RESTART_TYPES:
            raise SpecError("restart", f"must be one of {', '.join(RESTART_TYPES)}; got {restart!r}")
        self.boot()
        if spec is None:
            return self
        if not isinstance(spec, (SupervisorSpec, ChildSpec)):
            raise SpecError("spec", f"must be a SupervisorSpec or ChildSpec; got {type(spec).__name__}")
        self._check_transferable(spec, "spec")
        limit = timeout if timeout is not None else spec.start_timeout + 5.0
        self._call_kernel(StartTree(spec, restart), limit)
        self._trees[spec.name] = spec
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the runtime stops; True once it has, False if `timeout` passed first.

        Returns True after `stop()` (from another thread, or earlier). If a "transient" or
        "permanent" tree exited and took the runtime down, this finishes the stop (the actor
        system is shut down) and raises `RuntimeExited` with the tree, reason and cause; every
        later call raises it again. If the kernel or thespian's admin process died, it raises
        `RuntimeLost` (a `RuntimeExited`), and nothing of the actor system is left running. A
        program's main thread typically ends with `rt.wait()`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._exit is not None:
                raise self._exit
            if self._stopped or self._system is None:
                return True
            slice_ = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - time.monotonic())
            if slice_ <= 0:
                return False
            try:
                outcome = self._call_kernel(AwaitExit(), slice_)
            except AskTimeout:
                continue
            except Exception:  # noqa: BLE001 - stop() from another thread closes our context under us
                lost = self._end_lost()  # or the kernel died: this raises RuntimeLost
                if lost is not None:
                    raise lost from None
                if self._stopped:
                    return True
                raise
            if outcome is not None:
                self._exit = RuntimeExited(outcome.tree, outcome.reason, outcome.cause or "")
                self.stop()
                raise self._exit
            return True

    def stop_tree(self, name: str) -> None:
        """Stop one tree started with `start` (reverse order, shutdown budgets apply)."""
        budget = self.shutdown_budget + 2.0
        self._call_kernel(StopTree(validate_name(name)), budget)
        self._trees.pop(name, None)

    @property
    def shutdown_budget(self) -> float:
        """The longest `stop()` may take: every tree's budget (children added at run time
        included, as the kernel counts them now), the monitor's, and the system's."""
        if self.running and not self._attached:
            try:
                self._budget = self._call_kernel(GetBudget(), BUDGET_TIMEOUT)
            except SupervisionError:
                pass  # the last figure the kernel gave
        if self._budget is None:
            trees = sum(spec.shutdown_budget for spec in self._trees.values())
            return trees + self.kernel_spec.shutdown_budget + SYSTEM_SHUTDOWN_TIMEOUT
        return self._budget + SYSTEM_SHUTDOWN_TIMEOUT

    @classmethod
    def attach(cls, name: str | None = None) -> "Runtime":
        """Talk to a live runtime started (with a `name`) by another process on this machine.

        `stop()` on an attached runtime only detaches: it never stops the other process's system."""
        record = discovery.find(name)
        runtime = cls(record.base)
        runtime._attached = True
        runtime.name = record.name
        runtime.admin_port = record.admin_port
        runtime.listen = record.host
        bases.bind_to(record.host)  # thespian finds the admin through this address
        runtime._secret = bytes.fromhex(record.secret)
        auth.install(runtime._secret, record.admin_port)
        try:
            runtime._system = ActorSystem(record.base, {"Admin Port": record.admin_port}, transientUnique=True)
        except Exception as exc:
            raise RuntimeNotRunning(f"cannot reach the runtime {record.name!r} on port {record.admin_port}: {exc}") from exc
        runtime._kernel = record.kernel_address
        runtime._kernel_identity = record.kernel_identity
        return runtime

    @property
    def attached(self) -> bool:
        return self._attached

    def stop(self) -> None:
        """Stop every tree in reverse start order, then the actor system. Safe to call twice."""
        with self._lock:
            if self._system is None or self._stopped:
                self._stopped = True
                return
            budget = self.shutdown_budget - SYSTEM_SHUTDOWN_TIMEOUT  # asked while still running
            self._stopped = True
            self._ended.set()
            if self._attached:
                self._detach()
                return
            if self.name is not None and self._kernel_identity is not None:
                discovery.withdraw(self.name, self._kernel_identity.pid)
            admin = self._group  # the admin process leads the group (setsid): our child to reap
            try:
                if self._kernel_alive():
                    self._call_kernel(Shutdown(), budget, allow_stopped=True)
            except SupervisionError as exc:
                log.warning("ordered shutdown did not finish (%s); killing what is left", exc)
            finally:
                self._shutdown_system()
                auth.forget(self.admin_port)
                _live_runtimes.discard(self)
                reap_child(admin)

    def crash(self) -> None:
        """Fault injection: SIGKILL every process of this runtime's actor system at once, as a
        machine losing power would. Nothing is stopped in order; the runtime is unusable after."""
        if self.info.in_process or self._attached:
            raise ConfigError("crash: only a multiproc runtime this process started can be crashed")
        with self._lock:
            self._stopped = True
            self._ended.set()
            if self.name is not None and self._kernel_identity is not None:
                discovery.withdraw(self.name, self._kernel_identity.pid)
            system, self._system = self._system, None
            leader = self._group  # thespian's admin launcher: our child, reaped once its group is gone
            self._close_contexts()
            self._sweep_group()
            _close_transport(system)
            auth.forget(self.admin_port)
            _live_runtimes.discard(self)
            reap_child(leader)

    def _detach(self) -> None:
        """Let go of another process's system without stopping it."""
        self._close_contexts()
        self._system = None
        auth.forget(self.admin_port)

    def _close_contexts(self) -> None:
        for ctx in self._contexts:
            try:
                ctx.exit_clone()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self._contexts.clear()
        self._local = threading.local()

    def _shutdown_system(self) -> None:
        system, self._system = self._system, None
        self._close_contexts()
        if system is None:
            return
        done = threading.Event()

        def shutdown() -> None:
            try:
                system.shutdown()
            except Exception as exc:  # noqa: BLE001
                log.warning("thespian shutdown failed: %s", exc)
            finally:
                done.set()

        thread = threading.Thread(target=shutdown, name="thespian-shutdown", daemon=True)
        thread.start()
        done.wait(SYSTEM_SHUTDOWN_TIMEOUT)
        self._sweep_group()

    def _sweep_group(self) -> None:
        """Kill whatever is left of the actor system's processes (its own process group)."""
        if self._group is None:
            return
        group, self._group = self._group, None
        deadline = time.monotonic() + 2.0
        while group_members(group):
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            if time.monotonic() > deadline:
                log.error("processes of the actor system survive SIGKILL: %s", group_members(group))
                return
            time.sleep(0.01)

    # --- talking to actors --------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Fault injection: send `sig` (default SIGKILL) to the process of the actor `name`.

        Returns the pid, after the process is dead for SIGKILL. Only for multiproc bases."""
        if self.info.in_process:
            raise ConfigError(f"kill: actors of {self.base} run in this process; use a multiproc base")
        identity = self.whereis(name).identity
        if identity is None or not identity.kill(sig):
            raise NoSuchName(name, "its process is already gone")
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 1.0
            while identity.is_alive() and time.monotonic() < deadline:
                time.sleep(0.0005)  # SIGKILL is asynchronous: return once the process is dead
        return identity.pid

    # --- jobs: the job system lives in actors.jobs, which plugs its client in (supervision.clients) --

    def enqueue(self, kind: str, payload: Any = None, **options: Any) -> int:
        """Validate and enqueue one job (see `actors.jobs.enqueue`); returns its id.

        Options: queue, priority (higher runs first), run_at, max_attempts, unique_key, timeout,
        service. Needs `actors.jobs` imported in this process (else `ConfigError`)."""
        return job_client("enqueue").enqueue(self, kind, payload, **options)

    def enqueue_many(self, jobs: Any, timeout: float | None = None) -> list[int]:
        """Enqueue many `actors.jobs.new_job(...)` objects in one statement; returns their ids."""
        return job_client("enqueue_many").enqueue_many(self, jobs, timeout=timeout)

    # --- introspection ------------------------------------------------------------------------------

    def tree(self, timeout: float | None = None) -> Tree:
        """A snapshot of the whole tree: names, classes, pids, status, restart and error counts."""
        return self.ask(MONITOR_NAME, GetTree(), timeout)

    def which_children(self, supervisor: str, timeout: float | None = None) -> ChildTable:
        return ChildTable(supervisor, self.ask(supervisor, WhichChildren(), timeout))

    def count_children(self, supervisor: str, timeout: float | None = None) -> dict[str, int]:
        return self.ask(supervisor, CountChildren(), timeout)

    def start_child(self, supervisor: str, *args: Any, name: str | None = None, timeout: float | None = None, **kwargs: Any) -> str:
        """Start a child of a simple_one_for_one supervisor from its template; returns its name."""
        return self.ask(supervisor, StartChild(tuple(args), dict(kwargs), name), timeout or 30.0)

    def add_child(self, supervisor: str, spec: ChildSpec | SupervisorSpec, timeout: float | None = None) -> str:
        """Add and start a child spec under a (not simple_one_for_one) supervisor; returns its name."""
        self._check_transferable(spec, "spec")
        return self.ask(supervisor, AddChild(spec), timeout or spec.start_timeout + 5.0)

    def terminate_child(self, supervisor: str, name: str, timeout: float | None = None) -> None:
        """Stop a child (its shutdown policy applies). As in OTP, a permanent or transient child
        keeps its spec (stopped: `restart_child` starts it again, a one_for_all or rest_for_one
        restart too); a temporary child, or one of a simple_one_for_one supervisor, is removed."""
        self.ask(supervisor, TerminateChild(validate_name(name, "name")), timeout or 60.0)

    def restart_child(self, supervisor: str, name: str, timeout: float | None = None) -> str | None:
        """Start a stopped child again from its kept spec; its name, or None if its init returned
        `Ignore`. `ChildRunning` if it runs, `NoSuchName` if there is no such child."""
        return self.ask(supervisor, RestartChild(validate_name(name, "name")), timeout or 60.0)

    def delete_child(self, supervisor: str, name: str, timeout: float | None = None) -> None:
        """Forget the spec of a stopped child (`ChildRunning` if it runs)."""
        self.ask(supervisor, DeleteChild(validate_name(name, "name")), timeout)

    def get_childspec(self, supervisor: str, name: str, timeout: float | None = None) -> ChildSpec | SupervisorSpec:
        return self.ask(supervisor, GetChildspec(validate_name(name, "name")), timeout)

    # --- internals ---------------------------------------------------------------------------------------

    def _call_kernel(self, payload: Any, timeout: float, allow_stopped: bool = False) -> Any:
        if not allow_stopped and self._stopped:
            raise RuntimeNotRunning("the runtime was stopped")
        return self._request(self._kernel, Envelope(payload, KERNEL_NAME), time.monotonic() + timeout, None, KERNEL_NAME)

    def _kernel_alive(self) -> bool:
        if self._system is None:
            return False
        return self._kernel_identity is None or self._kernel_identity.is_alive()

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.ask_timeout
        return _check_seconds("timeout", timeout)

def _check_seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value <= 0:
        raise SpecError(field, f"must be a positive number of seconds; got {value!r}")
    return float(value)


def _sweep_launch(launcher: int) -> None:
    """Kill the process group a failed start left (led by thespian's admin launcher, `launcher`),
    and reap the launcher. The launcher itself goes first: until it has called setsid it leads
    no group, and killed it forks no admin (it is our child: its pid is not reused before the
    reap)."""
    try:
        os.kill(launcher, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + 2.0
    while group_members(launcher) and time.monotonic() < deadline:
        try:
            os.killpg(launcher, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.01)
    reap_child(launcher)


def _close_transport(system: ActorSystem | None) -> None:
    """Close the transport of an actor system dropped without thespian's shutdown, in the
    background: on multiprocQueueBase its receiving thread otherwise stays blocked on the dead
    admin's queue and prints a traceback when the interpreter exits (it wakes every 2 s)."""
    transport = getattr(getattr(system, "_systemBase", None), "transport", None)
    if transport is None:
        return

    def close() -> None:
        try:
            transport.close()
        except Exception:  # noqa: BLE001 - best effort: the system is gone
            pass

    threading.Thread(target=close, name="thespian-otp-close", daemon=True).start()


def _sentinel(runtime: "weakref.ref[Runtime]", ended: threading.Event, watched: tuple, interval: float) -> None:
    """The sentinel thread of a runtime: once one of the `watched` processes is dead, end the
    runtime (weakly held: a runtime dropped without `stop()` is still collected)."""
    while not ended.wait(interval):
        if runtime() is None:
            return  # collected: nobody is left to tell
        if all(identity.is_alive() for identity in watched if identity is not None):
            continue
        alive = runtime()
        if alive is None or alive._end_lost() is not None or alive._stopped:
            return
        # the second look found every process alive (a pid read between two states): keep watching


_live_runtimes: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


@atexit.register
def _stop_live_runtimes() -> None:
    for runtime in list(_live_runtimes):
        try:
            runtime.stop()
        except Exception:  # noqa: BLE001 - interpreter exit
            pass
