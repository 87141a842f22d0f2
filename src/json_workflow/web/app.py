"""The dashboard's routes: overview, failed files with retry, file history, reports, metrics, health.

Pages are rendered on the server (Jinja2); forms work without script; a few lines of script refresh
the overview's live part. GET never changes anything; every POST passes the Guard's checks.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections import OrderedDict
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from json_workflow.monitor import health, metrics
from json_workflow.names import shown
from json_workflow.plural import count, plural
from json_workflow.web.security import CSRF_FIELD, SESSION_COOKIE, Guard, GuardMiddleware
from json_workflow.web.view import RetryResult, View

RESULTS_KEPT = 50  # retry results, shown once on the page the POST redirects to

_env = Environment(loader=PackageLoader("json_workflow.web", "templates"), autoescape=select_autoescape(["html"]))
_env.filters["plural"] = lambda word, n: plural(n, word)  # {{ "file"|plural(n) }}: "file" or "files"
_env.filters["shown"] = shown  # a path with bytes that are not UTF-8, or invisible characters, escaped


def make_app(view: View, guard: Guard) -> Starlette:
    """The ASGI application over `view`, guarded by `guard`."""
    results: OrderedDict[str, RetryResult] = OrderedDict()
    registry = metrics.registry(view.metrics)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        config = view.config()
        zone = config.email.zone

        def when(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
            return "-" if ts is None else datetime.datetime.fromtimestamp(ts, zone).strftime(fmt)

        html = _env.get_template(name).render(
            request=request,
            relative=config.relative,
            root=str(config.root),
            csrf=guard.csrf,
            csrf_field=CSRF_FIELD,
            signed=guard.token is not None,
            when=when,
            ago=lambda ts: "-" if ts is None else _ago(time.time() - ts),
            shown=shown,
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=_NO_FRAMES)

    def overview_context() -> dict[str, Any]:
        live = view.live(activity=30)
        scan, report = view.scan_and_report(live)
        return {
            "live": live,
            "today": view.today(),
            "failed": len(view.failed()),
            "scan": scan,
            "report": report,
            "fleet": view.fleet(),
        }

    def overview(request: Request) -> HTMLResponse:
        return page(request, "overview.html", **overview_context())

    def live_part(request: Request) -> HTMLResponse:
        return page(request, "live.html", **overview_context())

    def failed(request: Request) -> HTMLResponse:
        result = results.get(request.query_params.get("result", ""))
        records = view.failed()
        clients = sorted({r.client or "_unknown" for r in records})
        return page(request, "failed.html", records=records, clients=clients, result=result)

    def failed_file(request: Request) -> HTMLResponse:
        found = view.failed_file(request.path_params["row"])
        if found is None:
            return page(request, "missing.html", 404, what="failed file")
        record, content = found
        return page(request, "failed_file.html", record=record, content=content)

    async def retry(request: Request) -> Response:
        form = await guard.form(request)
        if form.get("all"):
            result = await run_in_threadpool(view.retry, every=True)
        elif form.get("client"):
            result = await run_in_threadpool(view.retry, client=str(form["client"]))
        else:
            rows = [int(str(v)) for v in form.getlist("file") if str(v).isdigit()]
            result = await run_in_threadpool(view.retry, rows)
        key = secrets.token_urlsafe(8)
        results[key] = result
        while len(results) > RESULTS_KEPT:
            results.popitem(last=False)
        return RedirectResponse(f"/failed?result={key}", status_code=303)

    def files(request: Request) -> HTMLResponse:
        text = request.query_params.get("q", "")
        return page(request, "files.html", q=text, records=view.history(text))

    def file(request: Request) -> HTMLResponse:
        found = view.reception(request.path_params["row"])
        if found is None:
            return page(request, "missing.html", 404, what="file")
        record, receptions = found
        return page(request, "file.html", record=record, receptions=receptions)

    def reports(request: Request) -> HTMLResponse:
        return page(request, "reports.html", reports=view.reports())

    def report(request: Request) -> Response:
        html = view.report(request.path_params["name"])
        if html is None:
            return page(request, "missing.html", 404, what="report")
        # The report is an email's HTML: shown as it is, with no script and nothing fetched from elsewhere.
        return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    def metrics_page(request: Request) -> Response:
        return Response(metrics.exposition(registry), media_type=metrics.CONTENT_TYPE)

    def healthz(request: Request) -> Response:
        live = view.live() if view.monitor is not None else None
        if live is not None and not health.alive(live, time.time()):
            return JSONResponse({"status": "failing", "detail": f"no turn for {time.time() - live.beat:.0f}s"}, 503)
        return JSONResponse({"status": "ok"})

    def readyz(request: Request) -> Response:
        status, body = health.readiness(view.config(), view.live(), view.store, time.time())
        return JSONResponse(body, status)

    def login_form(request: Request) -> Response:
        if guard.token is None:  # nothing to sign in to
            return RedirectResponse("/", status_code=303)
        return page(request, "login.html", next=request.query_params.get("next", "/"), wrong=False)

    async def login(request: Request) -> Response:
        form = await guard.form(request)
        target = str(form.get("next") or "/")
        target = target if target.startswith("/") and not target.startswith("//") else "/"
        if guard.session is None or not guard.token_matches(str(form.get("token", ""))):
            return page(request, "login.html", 401, next=target, wrong=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, guard.session, httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        await guard.form(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    routes = [
        Route("/", overview),
        Route("/live", live_part),
        Route("/failed", failed),
        Route("/failed/retry", retry, methods=["POST"]),
        Route("/failed/{row:int}", failed_file),
        Route("/files", files),
        Route("/files/{row:int}", file),
        Route("/reports", reports),
        Route("/reports/{name}", report),
        Route("/metrics", metrics_page),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/login", login_form),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("json_workflow.web", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GuardMiddleware, guard=guard)])


_NO_FRAMES = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{count(seconds // 86400, 'day')} ago"
