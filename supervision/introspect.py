"""Snapshots of a live supervision tree, as plain data that renders itself with rich.

`Runtime.tree()` returns a `Tree`; printing it in a REPL, IPython or Jupyter shows a rich tree;
`Tree.to_dict()` gives JSON-able data for tools. `Runtime.which_children(name)` returns a
`ChildTable` that renders as a table.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import attrs

from supervision.messages import ChildInfo, NodeRow
from supervision.specs import SYSTEM_PREFIX

STATUS_STYLE = {
    "running": "green",
    "starting": "cyan",
    "restarting": "yellow",
    "stopping": "yellow",
    "exited": "red",
    "stopped": "dim",
    "waiting for the database": "yellow",
}


@attrs.frozen
class Counters:
    """Per-actor counters in a tree snapshot: dead letters, recoverable errors replied, crashes."""

    dead_letters: int = 0
    recoverable_errors: int = 0
    crashes: int = 0
    #: tells this actor sent that went nowhere (no such name, or a dead actor)
    undelivered: int = 0
    #: the last recoverable error it replied, in a line (type, request, message)
    last_error: str | None = None


#: the counters a tree shows, each only when it is not zero: (field of `Counters`, label, style)
SHOWN_COUNTERS = (
    ("crashes", "crashes", "red"),
    ("dead_letters", "dead letters", "magenta"),
    ("recoverable_errors", "errors", "magenta"),
    ("undelivered", "undelivered", "magenta"),
)


@attrs.frozen
class TreeNode:
    """One actor in a `Tree` snapshot: name, kind, class, status, pid, restarts, its counters (dead
    letters, recoverable errors, crashes) and its children."""

    name: str
    kind: str
    actor_class: str
    status: str
    pid: int | None
    restarts: int
    restart: str
    strategy: str | None = None
    last_exit: str | None = None
    counters: Counters = Counters()
    children: tuple["TreeNode", ...] = ()

    def walk(self) -> Iterator["TreeNode"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["counters"] = attrs.asdict(self.counters)
        data["children"] = [child.to_dict() for child in self.children]
        return data

    def label(self) -> str:
        kind = f"{self.strategy}" if self.kind == "supervisor" else self.actor_class
        pid = f" pid {self.pid}" if self.pid else ""
        extra = []
        if self.restarts:
            extra.append(f"restarts {self.restarts}")
        extra += [f"{label} {count}" for label, count, _ in self.shown_counters()]
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.name} [{kind}] {self.status}{pid}{tail}"

    def shown_counters(self) -> list[tuple[str, int, str]]:
        """(label, count, style) of each counter that is not zero, in `SHOWN_COUNTERS` order."""
        counts = [(label, getattr(self.counters, field), style) for field, label, style in SHOWN_COUNTERS]
        return [shown for shown in counts if shown[1]]


@attrs.frozen(repr=False)
class Tree:
    """The whole tree under the runtime's kernel, taken at `taken_at` (epoch seconds)."""

    nodes: tuple[TreeNode, ...]
    base: str = ""
    taken_at: float = attrs.field(factory=time.time)

    def walk(self) -> Iterator[TreeNode]:
        for node in self.nodes:
            yield from node.walk()

    def find(self, name: str) -> TreeNode | None:
        for node in self.walk():
            if node.name == name:
                return node
        return None

    def __getitem__(self, name: str) -> TreeNode:
        node = self.find(name)
        if node is None:
            raise KeyError(name)
        return node

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    @property
    def user_nodes(self) -> tuple[TreeNode, ...]:
        return tuple(n for n in self.nodes if not n.name.startswith(SYSTEM_PREFIX))

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "taken_at": self.taken_at, "nodes": [n.to_dict() for n in self.nodes]}

    def render(self, *, show_system: bool = True) -> Any:
        from rich.text import Text
        from rich.tree import Tree as RichTree

        root = RichTree(Text(f"runtime ({self.base})", style="bold"))

        def add(parent: Any, node: TreeNode) -> None:
            text = Text(node.name, style="bold" if node.kind == "supervisor" else "")
            kind = node.strategy if node.kind == "supervisor" else node.actor_class
            text.append(f" [{kind}] ", style="dim")
            text.append(node.status, style=STATUS_STYLE.get(node.status, ""))
            if node.pid:
                text.append(f" pid {node.pid}", style="dim")
            if node.restarts:
                text.append(f" restarts {node.restarts}", style="yellow")
            for label, count, style in node.shown_counters():
                text.append(f" {label} {count}", style=style)
            branch = parent.add(text)
            for child in node.children:
                add(branch, child)

        for node in self.nodes if show_system else self.user_nodes:
            add(root, node)
        return root

    def __rich__(self) -> Any:
        return self.render()

    def __str__(self) -> str:
        lines = [f"runtime ({self.base})"]

        def add(node: TreeNode, prefix: str, last: bool) -> None:
            lines.append(f"{prefix}{'└── ' if last else '├── '}{node.label()}")
            for i, child in enumerate(node.children):
                add(child, prefix + ("    " if last else "│   "), i == len(node.children) - 1)

        for i, node in enumerate(self.nodes):
            add(node, "", i == len(self.nodes) - 1)
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(_render_plain(self))

    def __repr__(self) -> str:
        return _render_plain(self)

    def _repr_html_(self) -> str:
        from rich.console import Console

        console = Console(record=True, width=100, file=_Null())
        console.print(self)
        return console.export_html(inline_styles=True)


class _Null:
    def write(self, _data: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def _render_plain(renderable: Any) -> str:
    """Render with rich for a REPL: colours when stdout is a terminal, plain text otherwise."""
    import shutil
    import sys

    from rich.console import Console

    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((100, 24)).columns
    console = Console(width=width, file=_Null(), force_terminal=tty, color_system="standard" if tty else None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get().rstrip("\n")


def build_tree(
    rows: dict[str, NodeRow], counters: dict[str, Counters], root: str, base: str = "", notes: dict[str, str] | None = None
) -> Tree:
    """Assemble the snapshot from the monitor's rows (each supervisor reports its children);
    a running actor's own note (`StatusNote`, such as "waiting for the database") replaces
    "running" as its status."""
    notes = notes or {}
    by_parent: dict[str, list[NodeRow]] = {}
    for row in rows.values():
        by_parent.setdefault(row.parent, []).append(row)

    def node(row: NodeRow, depth: int) -> TreeNode:
        # only the children of the supervisor's current process: rows reported by an earlier
        # incarnation describe actors that died with it
        current = [r for r in by_parent.get(row.name, ()) if r.parent_pid == row.pid] if depth < 64 else []
        kids = sorted(current, key=lambda r: r.position)
        return TreeNode(
            row.name,
            row.kind,
            row.actor_class,
            notes.get(row.name, row.status) if row.status == "running" else row.status,
            row.pid,
            row.restarts,
            row.restart,
            row.strategy,
            row.last_exit,
            counters.get(row.name, Counters()),
            tuple(node(k, depth + 1) for k in kids),
        )

    tops = sorted(by_parent.get(root, ()), key=lambda r: r.position)
    return Tree(tuple(node(r, 0) for r in tops), base)


@attrs.frozen(repr=False)
class ChildTable:
    """`which_children` of one supervisor; renders as a table."""

    supervisor: str
    children: tuple[ChildInfo, ...]

    def __iter__(self) -> Iterator[ChildInfo]:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def __getitem__(self, index: int) -> ChildInfo:
        return self.children[index]

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=f"children of {self.supervisor}")
        for column in ("name", "kind", "class", "status", "pid", "restarts"):
            table.add_column(column)
        for c in self.children:
            table.add_row(c.name, c.kind, c.actor_class, c.status, str(c.pid or "-"), str(c.restarts))
        return table

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(_render_plain(self))

    def __repr__(self) -> str:
        return _render_plain(self)

    def __str__(self) -> str:
        header = f"{'name':24} {'kind':10} {'class':20} {'status':10} {'pid':>7} {'restarts':>8}"
        rows = [
            f"{c.name:24} {c.kind:10} {c.actor_class:20} {c.status:10} {str(c.pid or '-'):>7} {c.restarts:>8}"
            for c in self.children
        ]
        return "\n".join([f"children of {self.supervisor}", header, *rows])
