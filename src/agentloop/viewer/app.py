"""The viewer's web app: routes that read traces and eval folders and render templates.

``create_app(folders)`` returns a Starlette (ASGI) app; ``agentloop view`` serves it on
127.0.0.1 with uvicorn, and tests drive it through Starlette's ``TestClient``. Routes:

=====================================  ===============================================
``GET /``                              runs list: filters, search, pages, replays/forks
``GET /runs/N/PATH``                   one run, a page of steps at a time (``?page=``)
``GET /runs/N/PATH/state``             JSON: how far the trace is (for live mode)
``POST /runs/N/PATH/feedback``         record feedback (``agentloop.feedback.add_feedback``)
``GET /diff?a=N/PATH&b=N/PATH``        two runs side by side (``traces diff``'s alignment)
``GET /evals``                         eval runs, a summary per agent version, a plot
``GET /evals/N/PATH``                  one eval run: cases x scores
``GET /compare?a=N/PATH&b=N/PATH``     ``eval compare`` of two eval runs, with p-values
``GET /static/...``                    the viewer's own CSS and script
=====================================  ===============================================
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote, urlencode

from jinja2 import Environment
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentloop.errors import TraceError, UserError
from agentloop.evals import EvalRun, compare
from agentloop.evals.summary import scorer_names
from agentloop.feedback import add_feedback
from agentloop.replay import diff_traces
from agentloop.trace import read_trace
from agentloop.viewer import templating
from agentloop.viewer.evalpage import find_evals, load_eval, plot
from agentloop.viewer.index import STATUSES, RunFilters, TraceIndex
from agentloop.viewer.runpage import line_count, load_run_page
from agentloop.viewer.security import (
    LOOPBACK_HOSTS,
    Forbidden,
    NotFound,
    SecurityHeaders,
    check_post,
    confine,
)

PER_PAGE = 50
FEEDBACK_SOURCE = "viewer"


class Viewer:
    """The state behind the routes: the folders, their index, the session token."""

    def __init__(self, folders: Sequence[Path], *, read_only: bool, token: str) -> None:
        self.index = TraceIndex(folders, beside_traces=not read_only)
        self.folders = self.index.folders
        self.read_only = read_only
        self.token = token
        self.env: Environment = templating.environment()

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        template = self.env.get_template(name)
        html = template.render(
            request=request,
            token=self.token,
            read_only=self.read_only,
            folders=self.folders,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def ref_of(self, path: Path) -> str:
        """The route reference of a file inside one of the folders."""
        for number, folder in enumerate(self.folders):
            if path.resolve().is_relative_to(folder):
                return f"{number}/{path.resolve().relative_to(folder).as_posix()}"
        raise NotFound("that file is outside the viewer's folders")

    # -- routes ------------------------------------------------------------------------------

    def runs(self, request: Request) -> Response:
        query = request.query_params
        filters = RunFilters(
            **{
                name: query.get(name, "").strip()
                for name in RunFilters.__dataclass_fields__
                if name in query
            }
        )
        self.index.refresh()
        page = _int(query.get("page"), 1)
        listing = self.index.listing(filters, page=page, per_page=PER_PAGE)
        kept = {k: v for k, v in query.multi_items() if k != "page" and v}
        return self.render(
            request,
            "runs.html",
            listing=listing,
            filters=filters,
            choices=self.index.choices(),
            statuses=STATUSES,
            page_query=lambda n: urlencode({**kept, "page": n}),
        )

    def run(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        path = confine(self.folders, ref)
        live = request.query_params.get("live") == "1"
        page = _int(request.query_params.get("page"), 10**9 if live else 1)
        view = load_run_page(path, page=page)
        self.index.refresh()
        parent_id = (view.header.parent or {}).get("run_id")
        parents = self.index.by_run_id(parent_id) if isinstance(parent_id, str) else []
        return self.render(
            request,
            "run.html",
            ref=ref,
            view=view,
            live=live and view.terminal is None,
            parent=parents[0] if parents else None,
            descendants=self.index.descendants(view.header.run_id),
            saved=request.query_params.get("saved") == "1",
        )

    def state(self, request: Request) -> Response:
        path = confine(self.folders, request.path_params["ref"])
        view = load_run_page(path, page=10**9)
        return JSONResponse(
            {"lines": line_count(path), "finished": view.terminal is not None},
            headers={"cache-control": "no-store"},
        )

    async def feedback(self, request: Request) -> Response:
        if self.read_only:
            raise Forbidden("this viewer is read-only (started with --read-only)")
        ref = request.path_params["ref"]
        path = confine(self.folders, ref)
        form = await request.form()
        check_post(request, self.token, str(form.get("token", "")))
        rating = str(form.get("rating", "")) or None
        if rating not in (None, "up", "down"):
            raise UserError(f"rating must be up or down, not {rating!r}")
        step = str(form.get("step", "")).strip()
        await run_in_threadpool(
            add_feedback,
            path,
            rating=cast(Literal["up", "down"] | None, rating),
            comment=str(form.get("comment", "")).strip() or None,
            correction=str(form.get("correction", "")).strip() or None,
            step=int(step) if step.isdigit() else None,
            source=FEEDBACK_SOURCE,
        )
        anchor = f"#step-{step}" if step.isdigit() else "#feedback"
        page = _int(str(form.get("page", "")), 1)
        return RedirectResponse(f"/runs/{quote(ref)}?page={page}&saved=1{anchor}", 303)

    def diff(self, request: Request) -> Response:
        refs = request.query_params.getlist("run")
        a = request.query_params.get("a") or (refs[0] if refs else "")
        b = request.query_params.get("b") or (refs[1] if len(refs) > 1 else "")
        if not a or not b:
            raise UserError("choose two runs to compare (a= and b=)")
        left = read_trace(confine(self.folders, a))
        right = read_trace(confine(self.folders, b))
        return self.render(
            request,
            "diff.html",
            a=a,
            b=b,
            left=left,
            right=right,
            diff=diff_traces(left, right),
        )

    def evals(self, request: Request) -> Response:
        entries = find_evals(self.folders)
        versions: dict[tuple[str, str], list[Any]] = {}
        for entry in entries:
            versions.setdefault((entry.summary.label, entry.summary.config_hash), []).append(entry)
        return self.render(
            request, "evals.html", entries=entries, versions=versions, panels=plot(entries)
        )

    def eval_run(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        confine(self.folders, ref, suffix=None)
        number, _, rel = ref.partition("/")
        entry = load_eval(self.folders, int(number), rel)
        if entry is None:
            raise NotFound(f"{rel} is not an eval run folder")
        return self.render(
            request,
            "eval.html",
            entry=entry,
            scorers=scorer_names(entry.run.records, entry.run.meta.scorers),
            trace_ref=lambda record: self._trace_ref(entry.run, record),
        )

    def _trace_ref(self, run: EvalRun, record: Any) -> str | None:
        file = run.trace_file(record)
        if file is None or not file.is_file():
            return None
        try:
            return self.ref_of(file)
        except NotFound:
            return None

    def compare(self, request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a or not b:
            raise UserError("choose two eval runs to compare (a= and b=)")
        result = compare(
            confine(self.folders, a, suffix=None), confine(self.folders, b, suffix=None)
        )

        def ref(path: str | None) -> str | None:
            if path is None:
                return None
            try:
                return self.ref_of(Path(path))
            except NotFound:
                return None

        return self.render(request, "compare.html", a=a, b=b, c=result, ref=ref)


def _int(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() else default


def create_app(
    folders: Sequence[str | Path], *, read_only: bool = False, token: str | None = None
) -> Starlette:
    """The viewer over ``folders`` of traces (and eval runs). ``token`` defaults to a fresh
    random session token; ``read_only`` refuses feedback."""
    viewer = Viewer(
        [Path(f) for f in folders],
        read_only=read_only,
        token=token or secrets.token_urlsafe(32),
    )

    def error_page(status: int) -> Any:
        async def handler(request: Request, exc: Exception) -> Response:
            return viewer.render(request, "error.html", status=status, message=str(exc))

        return handler

    routes = [
        Route("/", viewer.runs),
        Route("/runs/{ref:path}/state", viewer.state),
        Route("/runs/{ref:path}/feedback", viewer.feedback, methods=["POST"]),
        Route("/runs/{ref:path}", viewer.run),
        Route("/diff", viewer.diff),
        Route("/evals", viewer.evals),
        Route("/evals/{ref:path}", viewer.eval_run),
        Route("/compare", viewer.compare),
        Mount("/static", StaticFiles(packages=[("agentloop.viewer", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS)),
        ],
        exception_handlers={
            Forbidden: error_page(403),
            NotFound: error_page(404),
            UserError: error_page(400),
            TraceError: error_page(422),
        },
    )
    app.state.viewer = viewer
    return app
