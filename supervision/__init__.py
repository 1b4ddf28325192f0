"""thespian-otp's supervision core: OTP-style supervisors, a name registry and a monitor on thespian.

```python
from supervision import Runtime, Server, SupervisorSpec, ChildSpec

class Echo(Server):
    def handle(self, message):
        return message

with Runtime(base="multiprocTCPBase") as rt:
    rt.start(SupervisorSpec(name="root", children=[ChildSpec(name="echo", actor=Echo)]))
    assert rt.ask("echo", "hi", timeout=2.0) == "hi"
```
"""

from supervision._version import __version__
from supervision.errors import (
    ActorCrashed,
    AlreadyPresent,
    AlreadyRegistered,
    AskTimeout,
    BadRequest,
    ChildRunning,
    ConfigError,
    DeadLetter,
    MessageNotPicklable,
    MessageNotUnpicklable,
    NoSuchName,
    Recoverable,
    RemoteError,
    ReplyNotPicklable,
    ReplyNotUnpicklable,
    RuntimeExited,
    RuntimeLost,
    RuntimeNotRunning,
    SendTimeout,
    SpecError,
    StartFailed,
    SupervisionError,
    SystemMessageRefused,
    UnknownMessage,
)
from supervision.introspect import ChildTable, Tree, TreeNode
from supervision.messages import Answer, ChildInfo, CountChildren, Down, StartChild, TerminateChild, WhichChildren
from supervision.runtime import Runtime
from supervision.server import Ignore, ReplyHandle, Server
from supervision.specs import Backoff, ChildSpec, SupervisorSpec

__all__ = [
    "__version__",
    "ActorCrashed",
    "AlreadyPresent",
    "AlreadyRegistered",
    "Answer",
    "AskTimeout",
    "Backoff",
    "BadRequest",
    "ChildInfo",
    "ChildRunning",
    "ChildSpec",
    "ChildTable",
    "ConfigError",
    "CountChildren",
    "DeadLetter",
    "Down",
    "Ignore",
    "MessageNotPicklable",
    "MessageNotUnpicklable",
    "NoSuchName",
    "Recoverable",
    "RemoteError",
    "ReplyNotPicklable",
    "ReplyNotUnpicklable",
    "ReplyHandle",
    "Runtime",
    "RuntimeExited",
    "RuntimeLost",
    "RuntimeNotRunning",
    "SendTimeout",
    "Server",
    "SpecError",
    "StartChild",
    "StartFailed",
    "SupervisionError",
    "SystemMessageRefused",
    "SupervisorSpec",
    "TerminateChild",
    "Tree",
    "TreeNode",
    "UnknownMessage",
    "WhichChildren",
]
