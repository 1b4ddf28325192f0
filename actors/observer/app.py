"""The observer's web application (Starlette): the page, its live feed, actor details, job actions, /metrics.

Security, for a page that can retry and cancel jobs:
- only the Host names of the address the observer listens on, and the `allowed_hosts` it was
  given, are answered (no DNS rebinding: a hostile page cannot read the page, and so its token,
  through a name of its own that resolves to the observer's address);
- state-changing actions are POSTs that need the per-process token (in the page, never in a
  cookie) in the `X-Observer-Token` header and, when the browser sends one, an `Origin` of the
  observer itself; a cross-site form or fetch has neither;
- `read_only` hides the actions and refuses the POSTs (403); so does an observer without the
  job operations API (`actors.jobs.ops`), with 503 and the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from actors.observer.collect import find_spec, jsonable

STATIC = Path(__file__).resolve().parent / "static"
#: how often a live feed checks for a newer snapshot (snapshots come every `interval`)
FEED_POLL = 0.1
#: how long an actor's details wait for its supervisor to give its spec
SPEC_TIMEOUT = 2.0
#: a comment line this often keeps proxies and browsers from closing an idle feed
FEED_KEEPALIVE = 15.0
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def build_app(observer: Any) -> Starlette:
    """`observer`: an `actors.observer.server.Observer` (collector, metrics, token, flags)."""

    def page(request: Request) -> Response:
        html = (STATIC / "index.html").read_text()
        config = {
            "token": observer.token,
            "actions": observer.actions_enabled,
            "read_only": observer.read_only,
            "actions_note": observer.actions_note,
        }
        html = html.replace("__OBSERVER_CONFIG__", _attribute(json.dumps(config)))
        return HTMLResponse(html, headers=HEADERS)

    def snapshot(request: Request) -> Response:
        latest = observer.collector.latest
        if latest is None:
            latest = observer.collector.collect()
        return JSONResponse(latest, headers=HEADERS)

    async def feed(request: Request) -> Response:
        async def stream():
            version = -1
            quiet = 0.0
            while not observer.stopping.is_set():
                collector = observer.collector
                if collector.version != version and collector.latest is not None:
                    version = collector.version
                    quiet = 0.0
                    yield f"id: {version}\nevent: snapshot\ndata: {json.dumps(collector.latest)}\n\n"
                elif quiet >= FEED_KEEPALIVE:
                    quiet = 0.0
                    yield ": keepalive\n\n"
                await asyncio.sleep(FEED_POLL)
                quiet += FEED_POLL

        return StreamingResponse(stream(), media_type="text/event-stream", headers={**HEADERS, "X-Accel-Buffering": "no"})

    def actor(request: Request) -> Response:
        name = request.path_params["name"]
        tree = observer.collector.tree
        node = tree.find(name) if tree is not None else None
        if node is None:
            return JSONResponse({"error": f"no actor named {name!r} in the tree"}, status_code=404, headers=HEADERS)
        spec, spec_note = _spec_of(observer, tree, name)
        details = {
            "name": node.name,
            "kind": node.kind,
            "actor_class": node.actor_class,
            "status": node.status,
            "restart": node.restart,
            "strategy": node.strategy,
            "restarts": node.restarts,
            "counters": attrs.asdict(node.counters),
            "last_exit": node.last_exit,
            "children": [c.name for c in node.children],
            "spec": _spec(spec),
            "spec_note": spec_note,
            "recent_errors": [{"at": e.at, "what": e.what} for e in observer.collector.history.recent(name)],
            "process": observer.collector.process_info(node.pid),
        }
        return JSONResponse(details, headers=HEADERS)

    def metrics(request: Request) -> Response:
        if observer.collector.latest is None:
            observer.collector.collect()
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(observer.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def job_action(request: Request) -> Response:
        refused = _refuse(request, observer)
        if refused is not None:
            return refused
        action = request.path_params["action"]
        try:
            job_id = int(request.path_params["job_id"])
        except ValueError:
            return _error(400, "the job id must be an integer")
        try:
            summary = getattr(observer.job_ops, action)(job_id)
        except Exception as exc:  # typed errors of the job operations API, mapped to statuses
            return _error(_status_of(exc), f"{type(exc).__name__}: {exc}")
        observer.collector.refresh()  # the page sees the new state at once
        return JSONResponse({"job": _summary(summary)}, headers=HEADERS)

    def job(request: Request) -> Response:
        store = observer.collector.store
        if store is None:
            return _error(404, "this observer has no database")
        try:
            job_id = int(request.path_params["job_id"])
        except ValueError:
            return _error(400, "the job id must be an integer")
        row = store.job(job_id)
        if row is None:
            return _error(404, f"no job {job_id}")
        return JSONResponse({"job": jsonable(row)}, headers=HEADERS)

    hosts = observer.hosts()
    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/snapshot", snapshot),
            Route("/api/events", feed),
            Route("/api/actors/{name}", actor),
            Route("/api/jobs/{job_id}", job),
            Route("/api/jobs/{job_id}/{action:str}", job_action, methods=["POST"]),
            Route("/metrics", metrics),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)],
    )


def _refuse(request: Request, observer: Any) -> Response | None:
    """Why a POST must not run (None: it may)."""
    if request.path_params.get("action") not in ("retry", "cancel"):
        return _error(404, "unknown action: use retry or cancel")
    if observer.read_only:
        return _error(403, "this observer is read-only (started with --read-only)")
    if observer.job_ops is None:
        return _error(503, f"job actions are not available: {observer.actions_note}")
    origin = request.headers.get("origin")
    if origin is not None and origin not in observer.allowed_origins():
        return _error(403, f"cross-site request refused (Origin {origin})")
    if origin is None and request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return _error(403, "cross-site request refused (Sec-Fetch-Site)")
    token = request.headers.get("x-observer-token", "")
    if not hmac.compare_digest(token.encode(), observer.token.encode()):
        return _error(403, "missing or wrong X-Observer-Token (reload the page)")
    return None


def _status_of(exc: Exception) -> int:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "JobNotFound" in names:
        return 404
    if "JobStateError" in names:
        return 409
    if "Recoverable" in names:
        return 400
    return 500


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=HEADERS)


def _summary(summary: Any) -> Any:
    if attrs.has(type(summary)):
        return jsonable(attrs.asdict(summary, recurse=False))
    return jsonable(summary)


def _spec(spec: Any) -> dict[str, str] | None:
    """A spec's fields as short reprs (DatabaseConfig hides its DSN in its repr)."""
    if spec is None or not attrs.has(type(spec)):
        return None
    fields = {}
    for field in attrs.fields(type(spec)):
        value = getattr(spec, field.name)
        if field.name == "children":
            value = [getattr(c, "name", "?") for c in value]
        elif field.name == "actor":
            value = f"{value.__module__}.{value.__qualname__}" if isinstance(value, type) else value
        text = value if isinstance(value, str) else repr(value)
        fields[field.name] = text if len(text) <= 300 else text[:297] + "..."
    return fields


def _spec_of(observer: Any, tree: Any, name: str) -> tuple[Any, str | None]:
    """An actor's spec and, when there is none to show, why. Its supervisor is asked first
    (`get_childspec`, as OTP's supervisor:get_childspec): it knows the spec in force, also in an
    observer attached from another process and for children added later; a tree's root is known
    only to the runtime that started it."""
    parent = _parent(tree, name)
    asked = None
    if parent is not None:
        try:
            return observer.runtime.get_childspec(parent.name, name, timeout=SPEC_TIMEOUT), None
        except Exception as exc:  # noqa: BLE001 - a restarting supervisor answers next time; say why
            asked = f"its supervisor {parent.name} did not answer with it ({type(exc).__name__}: {exc})"
    spec = find_spec(observer.specs(), name)
    if spec is not None:
        return spec, None
    return None, asked or "the spec of a tree's root is known only to the process that started the tree"


def _parent(tree: Any, name: str) -> Any:
    for node in tree.walk():
        if any(child.name == name for child in node.children):
            return node
    return None


def _attribute(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
