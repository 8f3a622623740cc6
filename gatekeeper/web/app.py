"""The web's HTTP routes (FastAPI): pages, the status and history JSON, nodes, logs, the live console, /metrics
and the admin API.  `create_app(service)` binds them to a WebService, which holds the data and the caches.

Every error is JSON `{"error": "<sentence>"}` with a 4xx status for anything the client must fix; the OpenAPI
document is at /openapi.json (and browsable at /docs).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import gatekeeper
from gatekeeper.config.schema_parts import reason_problem
from gatekeeper.web import console, sources
from gatekeeper.web.admin import AccessRequest, Admin, AdminError, check_token, describe_request, identify
from gatekeeper.web.logstore import LOG_HEADERS, LogPathError
from gatekeeper.web.status import find_item, signature_status
from gatekeeper.zk import access as node_access
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.provider_store import ProviderStore

if TYPE_CHECKING:
    from gatekeeper.web.server import WebService

log = logging.getLogger("gatekeeper.web")
audit = logging.getLogger("gatekeeper.web.audit")

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "status.html", "/status": "status.html", "/builds": "builds.html", "/nodes": "nodes.html",
         "/images": "images.html", "/holds": "holds.html", "/signatures": "signatures.html"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
MAX_BODY = 64 * 1024
USER = re.compile(r"^[\w.@+-]{1,64}$")
BUILD_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")
CHANGE = re.compile(r"^[0-9,]+$")
GET = ["GET"]  # HEAD too, through CommonHeaders
CAPITALS = {b"www-authenticate": b"WWW-Authenticate", b"content-type": b"Content-Type",
            b"content-length": b"Content-Length"}


class Problem(Exception):
    """An answer other than 200, as `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data).encode(), status, headers, media_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="gatekeeper"'}
    return json_response({"error": message}, status, headers)


class CommonHeaders:
    """Pure ASGI middleware: HEAD answered as GET (the server sends no body), `Cache-Control: no-cache` (pages and
    data change every second), our Server, and header names in their usual capitals (as the server before this one
    sent them; some scripts compare them exactly)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.server = f"gatekeeper/{gatekeeper.__version__}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(CAPITALS.get(k) or k.title(), v) for k, v in message.get("headers", [])]
                if not any(k == b"Cache-Control" for k, _ in headers):
                    headers.append((b"Cache-Control", b"no-cache"))
                headers.append((b"Server", self.server))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_headers)


class BodyLimit:
    """Pure ASGI middleware: a request declaring a body over MAX_BODY is refused with 413 before it is read (the
    admin routes read theirs themselves and say the same; this covers the routes whose body FastAPI reads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > MAX_BODY:
                body = json.dumps({"error": f"request body too large ({int(declared)} bytes; at most "
                                            f"{MAX_BODY})"}).encode()
                await send({"type": "http.response.start", "status": 413, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class StatusFastPath:
    """Pure ASGI middleware for the most polled endpoint: while the cached status document is fresh, answer
    `GET /api/v1/status` with its JSON without routing (the route below builds it when it is not)."""

    def __init__(self, app: ASGIApp, svc: WebService) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v1/status" and scope["method"] in ("GET", "HEAD"):
            body = self.svc.fresh_status_bytes()
            if body is not None:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if len(loc) > 1 else ".".join(loc) or "request"
        given = error.get("input")
        if isinstance(given, str) and len(given) > 200:  # what was sent is quoted, not echoed back whole
            given = given[:200] + "…"
        shown = f' (got "{given}")' if isinstance(given, str) else ""
        parts.append(f"{where}: {error.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)


def create_app(svc: WebService) -> FastAPI:
    app = FastAPI(title="gatekeeper", version=gatekeeper.__version__,
                  description="Status, build history, nodes, logs, live consoles and the admin API of gatekeeper "
                              "(docs/status-api.md).", redoc_url=None)
    app.add_middleware(StatusFastPath, svc=svc)
    app.add_middleware(BodyLimit)
    app.add_middleware(CommonHeaders)  # the outer one: its headers go on the fast path's answers too

    # -- errors: always {"error": sentence}, never a traceback ------------------------------------------------------
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(404, f"no such page or endpoint: {request.url.path}")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}",
                                  {"Allow": (exc.headers or {}).get("Allow", "")})
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.error("web: %s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}")

    # -- pages and static files -------------------------------------------------------------------------------------
    def static(name: str) -> Response:
        try:
            target = (STATIC / name).resolve()
        except (ValueError, OSError):
            raise Problem(404, f"no such file: {name[:200]!r}") from None
        if STATIC.resolve() not in target.parents or not target.is_file():
            raise Problem(404, f"no such file: {name}")
        return Response(target.read_bytes(), media_type=TYPES.get(target.suffix, "application/octet-stream"))

    def page_route(page: str) -> Any:
        def route() -> Response:
            return static(page)
        return route

    for path, page in PAGES.items():
        app.add_api_route(path, page_route(page), methods=GET, include_in_schema=False)

    @app.api_route("/build/{build_id:path}", methods=GET, include_in_schema=False)
    def build_page(build_id: str) -> Response:
        return static("build.html")

    @app.api_route("/static/{name:path}", methods=GET, include_in_schema=False)
    def static_file(name: str) -> Response:
        return static(name)

    @app.api_route("/logs/{relative:path}", methods=GET, summary="A file or folder listing of the log store")
    def log_file(relative: str, request: Request) -> Response:
        try:
            target = svc.logs.resolve(relative)
        except LogPathError as exc:
            raise Problem(400, str(exc)) from None
        if target is None:
            raise Problem(404, f"no log file {relative}")
        if target.is_dir():
            if not request.url.path.endswith("/"):
                return Response(b"", 301, {"Location": request.url.path + "/"}, media_type="text/plain")
            entries = sorted(target.iterdir())
            links = "".join(
                f'<li><a href="{quote(e.name)}{"/" if e.is_dir() else ""}">{html.escape(e.name)}</a></li>'
                for e in entries)
            title = html.escape(relative)
            page = f"<!doctype html><title>logs: {title}</title><h1>{title}</h1><ul>{links}</ul>"
            return Response(page.encode(), headers=LOG_HEADERS, media_type="text/html; charset=utf-8")
        headers = svc.logs.headers(target)
        content_type = headers.pop("Content-Type")
        return Response(target.read_bytes(), headers=headers, media_type=content_type)

    # -- metrics and the JSON API -----------------------------------------------------------------------------------
    @app.api_route("/metrics", methods=GET, summary="Prometheus metrics")
    def metrics(request: Request) -> Response:
        body, content_type = svc.metrics(request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    @app.api_route("/api/v1/info", methods=GET)
    def info() -> Response:
        return json_response({"version": gatekeeper.__version__, "status_schema": 1, "admin": bool(svc.admin_token),
                              "history": svc.history is not None})

    @app.api_route("/api/v1/status", methods=GET, summary="The status document, schema 1 (docs/status-api.md)")
    def status() -> Response:
        return Response(svc.status_bytes(), media_type="application/json")

    @app.api_route("/api/v1/status/change/{change}", methods=GET, summary="The items of one change (N or N,P)")
    def status_change(change: str, pipeline: str | None = None) -> Response:
        if not CHANGE.match(change):
            raise Problem(400, f'"{change[:200]}" is not a change (expected N or N,P such as 5,1)')
        items = find_item(svc.status(), change, pipeline)
        if not items:
            raise Problem(404, f"change {change} is in no pipeline")
        return json_response(items)

    def history() -> Any:
        if svc.history is None:
            raise Problem(503, "no build history database is configured")
        return svc.history

    @app.api_route("/api/v1/builds", methods=GET, summary="Builds from the history, newest first")
    def builds(project: str | None = None, job: str | None = None, result: str | None = None,
               change: str | None = Query(None, description="a change number"),
               pipeline: str | None = None,
               final: str | None = Query(None, description="true: only final attempts; false: only retried ones"),
               limit: str | None = Query(None, description="at most this many (50; at most 1000)"),
               offset: str | None = Query(None, description="skip this many")) -> Response:
        db = history()
        rows = db.builds(project=project or None, job=job or None, result=result or None,
                         change=_int_arg("change", change, None), pipeline=pipeline or None,
                         final={"true": True, "false": False}.get((final or "").lower()),
                         limit=min(_int_arg("limit", limit, 50) or 50, 1000), offset=_int_arg("offset", offset, 0))
        return json_response([r.to_dict() for r in rows])

    @app.api_route("/api/v1/signatures", methods=GET,
                   summary="Known-bug signatures with their hits per day over the last week and their newest hits")
    def signatures() -> Response:
        return json_response(signature_status(svc.zk, svc.layout()))

    @app.api_route("/api/v1/buildsets", methods=GET, summary="Buildsets with their builds, newest first")
    def buildsets(project: str | None = None, pipeline: str | None = None, change: str | None = None,
                  result: str | None = None, limit: str | None = None) -> Response:
        db = history()
        rows = db.buildsets(project=project or None, pipeline=pipeline or None,
                            change=_int_arg("change", change, None), result=result or None,
                            limit=min(_int_arg("limit", limit, 50) or 50, 1000))
        return json_response([r.to_dict() for r in rows])

    @app.api_route("/api/v1/builds/{build_id}/console", methods=GET,
                   summary="The live console of a running build: text/plain, or server-sent events when the "
                           "client accepts text/event-stream")
    async def build_console(build_id: str, request: Request,
                            offset: str | None = Query(None, description="skip this many bytes of the console"),
                            snapshot: bool = Query(False, description="only what the console holds now")
                            ) -> Response:
        if not BUILD_ID.match(build_id):
            raise Problem(400, f'"{build_id[:200]}" is not a build id')
        skip = _int_arg("offset", offset, 0) or 0
        bases = await run_in_threadpool(svc.console_bases)
        upstream = await console.find_console(bases, build_id)
        if upstream is None:
            raise Problem(404, f"build {build_id} has no live console (finished builds keep theirs in their logs)")
        svc.relays.add(upstream)
        chunks = console.skip(_tracked(svc, upstream), skip)
        if snapshot:
            held = await console.available(chunks)
            return Response(held, media_type="text/plain; charset=utf-8",
                            headers={"X-Console-Offset": str(skip + len(held))})
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(console.as_events(chunks), media_type="text/event-stream",
                                     headers={"X-Accel-Buffering": "no"})
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8", headers={"X-Accel-Buffering": "no"})

    @app.api_route("/api/v1/builds/{build_id}", methods=GET, summary="One build, with its log files")
    def build(build_id: str) -> Response:
        if not BUILD_ID.match(build_id):
            raise Problem(400, f'"{build_id[:200]}" is not a build id')
        doc = svc.build(build_id)
        if doc is None:
            raise Problem(404, f"no build {build_id}")
        return json_response(doc)

    @app.api_route("/api/v1/nodes", methods=GET, summary="Node records, without key material")
    def nodes() -> Response:
        return json_response(sources.nodes(svc.zk))

    @app.api_route("/api/v1/requests", methods=GET, summary="Open node requests")
    def node_requests() -> Response:
        return json_response(sources.node_requests(svc.zk))

    @app.api_route("/api/v1/images", methods=GET, summary="Image builds per image and provider")
    def images() -> Response:
        return json_response(sources.images(svc.zk))

    @app.api_route("/api/v1/holds", methods=GET, summary="Held nodes and autohold requests")
    def holds() -> Response:
        held = [n for n in sources.nodes(svc.zk) if n.get("state") == "hold" or n.get("hold_requested")]
        return json_response({"nodes": held, "autoholds": sources.autoholds(svc.zk)})

    # -- admin ------------------------------------------------------------------------------------------------------
    async def admin(action: str, request: Request) -> Response:
        who = _who(request)
        try:
            check_token(request.headers.get("authorization"), svc.admin_token)
        except AdminError as exc:
            audit.warning("admin %s refused for %s: %s", action, who, exc)
            return error_response(exc.status, str(exc))
        body: dict[str, Any] = {}
        try:
            body = await _json_body(request, svc.body_timeout)
            result = await run_in_threadpool(svc.admin.run, action, body, who)
        except AdminError as exc:
            audit.info("admin %s by %s: %s failed: %s", action, who, describe_request(body), exc)
            return error_response(exc.status, str(exc))
        return json_response(result)

    def admin_route(action: str) -> Any:
        async def route(request: Request) -> Response:
            return await admin(action, request)
        return route

    for action, (model, method) in Admin.ACTIONS.items():
        doc = (getattr(Admin, method).__doc__ or "").strip()
        app.add_api_route(
            f"/api/v1/admin/{action}", admin_route(action), methods=["POST"],
            summary=f"admin: {action}", description=doc, tags=["admin"],
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": model.model_json_schema()}}},
                "security": [{"bearer": []}],
                "responses": {"400": {"description": "bad input, naming the field"},
                              "401": {"description": "no bearer token"}, "403": {"description": "wrong token"}}})

    # -- events set aside after failing (dead letters) -----------------------------------------------------------
    @app.api_route("/api/v1/events/dead-letters", methods=GET, tags=["events"],
                   summary="Events set aside after failing: dead letters and those waiting for a retry")
    def dead_letters() -> Response:
        letters = DeadLetters(svc.zk)

        def view(letter: Any, state: str) -> dict[str, Any]:
            return {"id": letter.ident, "state": state, **letter.to_dict()}
        return json_response([view(x, "dead") for x in letters.list()]
                             + [view(x, "retrying") for x in letters.retries()])

    @app.post("/api/v1/admin/events/{ident}/{verb}", tags=["admin", "events"],
              summary="admin: replay a dead letter into its queue, or discard it",
              responses={401: {"description": "no bearer token"}, 403: {"description": "wrong token"},
                         404: {"description": "no such dead letter"}})
    def dead_letter_action(ident: str, verb: str, request: Request) -> Response:
        who = _who(request)
        try:
            check_token(request.headers.get("authorization"), svc.admin_token)
        except AdminError as exc:
            audit.warning("admin %s of event %s refused for %s: %s", verb, ident[:64], who, exc)
            return error_response(exc.status, str(exc))
        if verb not in ("replay", "discard"):
            return error_response(404, f"unknown action {verb[:64]!r} (expected replay or discard)")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", ident):
            return error_response(400, f"{ident[:64]!r} is not an event id")
        letters = DeadLetters(svc.zk)
        if verb == "replay":
            new_id = letters.replay(ident)
            if new_id is None:
                return error_response(404, f"no dead letter {ident}")
            audit.info("admin replay of event %s by %s: queued again as %s", ident, who, new_id)
            return json_response({"replayed": ident, "event": new_id})
        if not letters.discard(ident):
            return error_response(404, f"no dead letter {ident}")
        audit.info("admin discard of event %s by %s", ident, who)
        return json_response({"discarded": ident})

    # -- node providers: health, and drain/undrain by operators ---------------------------------------------------
    @app.api_route("/api/v1/providers", methods=GET, tags=["providers"],
                   summary="Each node provider's health (circuit breaker, error rate, boot times) and drain state")
    def providers() -> Response:
        return json_response(sources.providers(svc.zk))

    @app.post("/api/v1/admin/providers/{name}/{verb}", tags=["admin", "providers"],
              summary="admin: drain a provider (it launches nothing; its ready nodes are used up) or undrain it",
              responses={401: {"description": "no bearer token"}, 403: {"description": "wrong token"},
                         404: {"description": "no such provider"}})
    async def provider_action(name: str, verb: str, request: Request) -> Response:
        who = _who(request)
        try:
            check_token(request.headers.get("authorization"), svc.admin_token)
            body = await _json_body(request, svc.body_timeout)
        except AdminError as exc:
            audit.warning("admin %s of provider %s refused for %s: %s", verb, name[:64], who, exc)
            return error_response(exc.status, str(exc))
        if verb not in ("drain", "undrain"):
            return error_response(404, f"unknown action {verb[:64]!r} (expected drain or undrain)")
        reason = body.get("reason", "")
        if not isinstance(reason, str) or reason_problem(reason):
            problem = reason_problem(reason) if isinstance(reason, str) else "is not a text"
            return error_response(400, f"field reason: the reason {problem}")
        known = {p["name"] for p in await run_in_threadpool(sources.providers, svc.zk)}
        if name not in known:
            return error_response(404, f"no provider {name[:64]!r} (known: {', '.join(sorted(known)) or 'none'})")
        store = ProviderStore(svc.zk)
        state = await run_in_threadpool(store.set_drained, name, verb == "drain", reason or f"drained by {who}")
        audit.info("admin %s of provider %s by %s%s", verb, name, who, f": {reason}" if reason else "")
        return json_response({"provider": name, "drained": state.drained, "reason": state.drain_reason})

    # -- developers' access to held nodes ------------------------------------------------------------------------
    @app.post("/api/v1/nodes/{node_id}/access", tags=["access"], summary="Put your SSH key on a node held for "
              "your change's failed build (your own token, or the admin token for anyone's key)",
              responses={400: {"description": "bad key or field"}, 401: {"description": "no bearer token"},
                         403: {"description": "not your change, or disabled"},
                         404: {"description": "no such node"}, 409: {"description": "the node is not held"}})
    async def request_node_access(node_id: str, body: AccessRequest, request: Request) -> Response:
        try:
            user, operator = identify(request.headers.get("authorization"), svc.admin_token, svc.user_tokens)
        except AdminError as exc:
            audit.warning("access to node %s refused for %s: %s", node_id[:64], _who(request), exc)
            return error_response(exc.status, str(exc))
        settings = svc.hold_access
        hours = body.hours
        if settings.get("max-hours") and (hours is None or hours > float(settings["max-hours"])):
            hours = float(settings["max-hours"])

        def grant() -> node_access.AccessGrant:
            who = user or f"operator ({_who(request)})"
            target = body.user if operator and body.user else user or node_access.node_owner(svc.zk, node_id)
            return node_access.request_access(svc.zk, node_id, target, body.public_key, who, operator=operator,
                                              hours=hours, enabled=bool(settings.get("enabled", True)))

        try:
            result = await run_in_threadpool(grant)
        except node_access.AccessRefused as exc:
            audit.info("access to node %s refused for %s: %s", node_id[:64], user or "an operator", exc)
            return error_response(exc.status, str(exc))
        return json_response({"grant": result.id, "node": result.node, "user": result.user,
                              "expires": result.expires, "state": result.state,
                              "login": "the launcher installs the key within seconds; log in as the node's user "
                                       "at its address (see /api/v1/nodes)"}, 201)

    @app.api_route("/api/v1/access", methods=GET, tags=["access"], summary="Grants of access to held nodes")
    def access_grants() -> Response:
        return json_response([g.to_dict() for g, _ in node_access.list_grants(svc.zk)])

    @app.post("/api/v1/admin/{action}", include_in_schema=False)
    async def unknown_admin(action: str, request: Request) -> Response:
        return await admin(action, request)

    return app


def _int_arg(name: str, value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise Problem(400, f'query parameter {name}="{value[:200]}" is not a number') from None
    if number < 0:
        raise Problem(400, f"query parameter {name}={number} is negative")
    return number


def _who(request: Request) -> str:
    user = request.headers.get("x-gatekeeper-user", "") or "anonymous"
    if not USER.match(user):
        user = "invalid-user-name"
    host = request.client.host if request.client else "unknown"
    return f"{user} from {host}"


async def _json_body(request: Request, timeout: float) -> dict[str, Any]:
    """The request's JSON object, read with a size cap and a time limit (a client that stalls is let go)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise AdminError(f"request body too large ({declared} bytes; at most {MAX_BODY})", 413)

    async def read() -> bytes:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise AdminError(f"request body too large (over {MAX_BODY} bytes)", 413)
        return raw

    try:
        raw = await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise AdminError(f"the request body did not arrive within {timeout:g} s", 408) from None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise AdminError("request body is not JSON") from None
    except RecursionError:
        raise AdminError("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise AdminError("request body must be a JSON object")
    return body


async def _tracked(svc: WebService, upstream: console.Upstream) -> Any:
    try:
        async for chunk in upstream.chunks():
            yield chunk
    finally:
        svc.relays.discard(upstream)
