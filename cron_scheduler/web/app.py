"""The web application (Starlette) and its server (uvicorn).

Who may do what:
- on a loopback bind, reads are open to local users and actions need the token;
- on any other bind, every request needs the token (a header), or for reads the cookie that
  /login sets: a read credential derived from the token (auth.read_credential), not the token,
  so a leaked cookie never acts; a POST always needs the token in a header or form field;
- with --read-only, actions are refused whatever is presented;
- with --no-token (loopback only), there is no token and so no action.
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cron_scheduler.errors import CronSchedulerError, OperationalError, UsageError, UnknownJob, UnknownRun
from cron_scheduler.home import Home
from cron_scheduler.web import api, auth, live, metrics, pages

HERE = Path(__file__).parent
COOKIE = "cron_scheduler_read"  # holds auth.read_credential, never the token
OPEN_PATHS = ("/login", "/static/")
MAX_FORM = 64 * 1024


class Guard(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next):
        state = request.app.state
        path = request.url.path
        if request.method == "POST" and path != "/login":
            if state.read_only:
                return JSONResponse({"error": "read-only dashboard: actions are disabled"}, 403)
            form = await form_of(request)
            if not auth.matches(state.token, auth.presented(request.headers, form)):
                return JSONResponse({"error": "this action needs the token (X-Token header); "
                                              "see `cron-scheduler web --print-token`"}, 403)
        elif state.remote and not path.startswith(OPEN_PATHS):
            given = auth.presented(request.headers)
            if not (auth.matches(state.token, given) or auth.matches(state.read_cookie, request.cookies.get(COOKIE))):
                if path.startswith(("/api/", "/metrics")):
                    return JSONResponse({"error": "this dashboard needs the token"}, 401)
                return RedirectResponse("/login", 303)
        return await call_next(request)


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the token field of a page without script); {} otherwise."""
    from urllib.parse import parse_qsl
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    return dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace")))


async def login(request: Request) -> Response:
    """A form that sets the read cookie on a remote bind (HttpOnly, SameSite=Strict)."""
    state = request.app.state
    if request.method == "POST":
        form = await form_of(request)
        if auth.matches(state.token, form.get("token")):
            response = RedirectResponse("/", 303)
            response.set_cookie(COOKIE, state.read_cookie, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
            return response
        return HTMLResponse(_LOGIN.format(note="wrong token"), 403)
    return HTMLResponse(_LOGIN.format(note=""))


_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cron-scheduler</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main><h1>cron-scheduler</h1>
<form method="post" action="/login"><p>This dashboard needs its token (<code>cron-scheduler web --print-token</code>).</p>
<input name="token" type="password" aria-label="token"> <button>open</button> <span class="bad">{note}</span></form>
</main></body></html>"""


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, (UnknownJob, UnknownRun)):
        code = 404
    elif isinstance(exc, UsageError):
        code = 400
    elif isinstance(exc, OperationalError):
        code = 409
    else:
        code = 500
        import traceback
        traceback.print_exception(exc, file=sys.stderr)  # a bug: its trace goes to the server's stderr
    message = str(exc) if isinstance(exc, CronSchedulerError) else "internal error"
    if request.url.path.startswith("/api/") or request.method == "POST":
        return JSONResponse({"error": message}, code)
    return HTMLResponse(f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>error</title>'
                        f'<link rel="stylesheet" href="/static/app.css"></head><body><main><h1>{code}</h1>'
                        f'<p>{_escape(message)}</p><p><a href="/">jobs</a></p></main></body></html>', code)


def _escape(text: str) -> str:
    from html import escape
    return escape(text)


def build(home: Home, *, read_only: bool = False, use_token: bool = True, remote: bool = False) -> Starlette:
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    routes = [
        Route("/", pages.jobs),
        Route("/jobs/{job_id}", pages.job),
        Route("/runs/{run_id:int}", pages.run),
        Route("/timeline", pages.timeline),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/metrics", metrics.endpoint),
        Route("/api/status", api.status),
        Route("/api/jobs", api.jobs),
        Route("/api/jobs/{job_id}", api.job),
        Route("/api/jobs/{job_id}/run", api.run_job, methods=["POST"]),
        Route("/api/jobs/{job_id}/stop", api.stop_job, methods=["POST"]),
        Route("/api/jobs/{job_id}/pause", api.set_enabled(False), methods=["POST"]),
        Route("/api/jobs/{job_id}/resume", api.set_enabled(True), methods=["POST"]),
        Route("/api/runs", api.runs),
        Route("/api/runs/{run_id:int}", api.run),
        Route("/api/runs/{run_id:int}/log", api.run_log),
        Route("/api/runs/{run_id:int}/log/stream", live.log_stream),
        Route("/api/runs/{run_id:int}/stop", api.stop_run, methods=["POST"]),
        Route("/api/runs/{run_id:int}/rerun", api.rerun, methods=["POST"]),
        Route("/api/alerts", api.alerts),
        Route("/api/events", live.events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard)],
                    exception_handlers={CronSchedulerError: _error, Exception: _error})
    app.state.home = home
    app.state.read_only = read_only or not use_token
    app.state.remote = remote
    app.state.token = auth.token(home) if use_token else None
    app.state.read_cookie = auth.read_credential(app.state.token) if app.state.token else None
    app.state.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                      autoescape=select_autoescape(["html"]))
    app.state.broadcaster = live.Broadcaster(home)
    return app


def serve(home: Home, bind: str, *, read_only: bool = False, use_token: bool = True) -> None:
    """Listen until SIGTERM/SIGINT; one line on stderr says where, once the port is ours (a
    busy port is one error line, exit 1, and no URL that nothing serves)."""
    import uvicorn
    host, port = auth.parse_bind(bind)
    auth.check_bind(host, use_token)
    app = build(home, read_only=read_only, use_token=use_token, remote=not auth.is_loopback(host))
    sock = listen(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)
    mode = "read-only" if app.state.read_only else "actions need the token"
    shown = f"[{host}]" if ":" in host else host
    print(f"cron-scheduler web: http://{shown}:{sock.getsockname()[1]}/ (home {home.root}; {mode})",
          file=sys.stderr, flush=True)
    with sock:
        server.run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or OperationalError naming why not (in use, no such
    address, a privileged port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise OperationalError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        hint = " (another `cron-scheduler web`? pick a free port with --bind)" if exc.errno == errno.EADDRINUSE else ""
        raise OperationalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    return sock
