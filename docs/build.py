"""Build the API reference of every public name into docs/api/ (pdoc), warnings as errors.

Usage: python -m docs.build [--out DIR]        (needs the docs extra: pip install -e '.[docs]')

It fails (exit 1), naming each problem, when pdoc warns (a module that does not import, a
docstring it cannot parse, a broken cross-reference) or when a public class (a name in a
package's `__all__`) has no docstring of its own.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import warnings
from pathlib import Path

#: the packages whose `__all__` is the public API
PUBLIC = ("supervision", "actors.jobs", "actors.limiter", "actors.projector", "actors.stores")
#: modules every class of which is documented (the stores and cores users build on)
EVERY_CLASS = (
    "actors.stores.rows", "actors.stores.events", "actors.stores.jobs", "actors.stores.processes",
    "actors.stores.checkpoints", "actors.stores.migrate", "actors.stores.queries", "actors.stores.scratch",
    "actors.stores.database", "actors.stores.setup", "actors.limiter.core", "actors.tables", "supervision.registry",
    "supervision.intensity", "supervision.policy", "supervision.liveness", "supervision.introspect",
    "actors.stores.job_ops", "actors.stores.schedules", "actors.stores.observer", "actors.observer.history",
    "actors.jobs.heartbeat", "supervision.supervisor", "supervision.discovery",
)
#: what the reference documents (submodules included)
MODULES = ("supervision", "actors")
#: modules that are programs or tools, not API
EXCLUDE = ("!actors.cli", "!actors.demo", "!actors.demo_jobs")


def undocumented() -> list[str]:
    missing = []
    for package in PUBLIC:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if inspect.isclass(value) and not (value.__dict__.get("__doc__") or "").strip():
                missing.append(f"{package}.{name}: public class without a docstring")
    for module_name in EVERY_CLASS:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if name.startswith("_") or not inspect.isclass(value) or value.__module__ != module_name:
                continue
            if not (value.__dict__.get("__doc__") or "").strip():
                missing.append(f"{module_name}.{name}: class without a docstring")
    return sorted(set(missing))


def build(out: Path) -> list[str]:
    import pdoc
    import pdoc.render

    problems = undocumented()
    pdoc.render.configure(docformat="markdown", footer_text="thespian-otp", search=True, show_source=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, *EXCLUDE, output_directory=out)
    problems += [f"pdoc: {w.message}" for w in caught]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.build", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "api", help="output directory")
    args = parser.parse_args(argv)
    problems = build(args.out)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"API reference written to {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
