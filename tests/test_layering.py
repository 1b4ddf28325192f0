"""`supervision/` is the OTP core and imports nothing from the workloads in `actors/` (issue 18).

Read from the source (every import statement, those inside functions too, and `import_module` /
`__import__` calls with a literal name), and checked in a fresh interpreter: importing
`supervision` and running a runtime loads no `actors` module, and `rt.enqueue` without the
job client says how to get one.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

import supervision

PACKAGE = pathlib.Path(supervision.__file__).parent


def _is_workload(module: str) -> bool:
    return module == "actors" or module.startswith("actors.")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in `tree`, at any depth, absolute imports only."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if function in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_scan_sees_imports_inside_functions_and_by_name():
    source = textwrap.dedent(
        """
        from thespian.actors import ActorSystem
        def enqueue():
            from actors.jobs.client import enqueue
            import actors
        importlib.import_module("actors.limiter")
        """
    )
    workload = [module for _, module in _imports(ast.parse(source)) if _is_workload(module)]
    assert workload == ["actors.jobs.client", "actors", "actors.limiter"]


def test_no_module_of_supervision_imports_actors():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the whole package, not an empty glob
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
        for path in modules
        for line, module in _imports(ast.parse(path.read_text(), str(path)))
        if _is_workload(module)
    ]
    assert offenders == []


def test_a_runtime_without_actors_loads_no_workload_and_enqueue_says_what_to_import():
    program = textwrap.dedent(
        """
        import sys
        from supervision import ConfigError, Runtime
        with Runtime(base="simpleSystemBase") as rt:
            rt.tree()
            try:
                rt.enqueue("resize", {"image": 7})
            except ConfigError as error:
                print("ConfigError:", error)
        print("loaded:", sorted(m for m in sys.modules if m == "actors" or m.startswith("actors.")))
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ConfigError: rt.enqueue: no job client in this process; `import actors.jobs` first" in done.stdout
    assert "loaded: []" in done.stdout
