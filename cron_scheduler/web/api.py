"""The JSON API: the shapes of the CLI's --json (views.list_view/show_view/status_view,
control.history_view/run_view) and the actions, through the CLI's request path (run, stop,
rerun) and JobService (pause, resume).

Ids from the URL are checked before use: a job id must be a valid id, a run id an int in
SQLite's range; a run's log is read from runs/<job>/<run-id>.log of the home, never through a
link (control.open_run_log), so no URL reaches a file outside the home.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cron_scheduler.errors import InvalidOption, UnknownRun
from cron_scheduler.models import validate_job_id

LOG_TAIL = 64 * 1024  # bytes of a log shown by default (the tail)
MAX_LIMIT = 1000


def home_of(request: Request):
    return request.app.state.home


def job_id_of(request: Request) -> str:
    return validate_job_id(request.path_params["job_id"])


def run_id_of(request: Request) -> int:
    from cron_scheduler.control import RUN_ID_MAX
    run_id = request.path_params["run_id"]
    if not 1 <= run_id <= RUN_ID_MAX:
        raise UnknownRun(f"unknown run id: {run_id}")
    return run_id


def int_param(request: Request, name: str, default: int | None, low: int = 0, high: int = 2 ** 63 - 1) -> int | None:
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidOption(f"invalid {name} {text!r}: use a whole number") from None
    if not low <= value <= high:
        raise InvalidOption(f"invalid {name} {value}: use {low} to {high}")
    return value


# --- reads ---------------------------------------------------------------------------------

def jobs(request: Request) -> Response:
    from cron_scheduler.views import list_view
    return JSONResponse(list_view(home_of(request)))


def job(request: Request) -> Response:
    from cron_scheduler.views import show_view
    return JSONResponse(show_view(home_of(request), job_id_of(request)))


def runs(request: Request) -> Response:
    """`history --json`: ?job=ID&status=S&limit=N (newest first)."""
    from cron_scheduler.control import history_view
    job_id = request.query_params.get("job") or None
    if job_id is not None:
        validate_job_id(job_id)
    limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
    return JSONResponse(history_view(home_of(request), job_id, limit, request.query_params.get("status") or None))


def run(request: Request) -> Response:
    from cron_scheduler.control import require_run, run_view
    return JSONResponse(run_view(require_run(home_of(request), run_id_of(request))))


def run_log(request: Request) -> Response:
    """The run's output as text: ?offset=N from that byte, else its last LOG_TAIL bytes. The
    header X-Log-Offset says where the text ends (for the next read)."""
    data, end = read_log(home_of(request), run_id_of(request), int_param(request, "offset", None))
    return Response(data, media_type="text/plain; charset=utf-8", headers={"X-Log-Offset": str(end)})


def read_log(home, run_id: int, offset: int | None, tail: int = LOG_TAIL) -> tuple[bytes, int]:
    from cron_scheduler.control import open_run_log, require_run
    fh = open_run_log(home, require_run(home, run_id))
    if fh is None:
        return b"", 0
    with fh:
        size = fh.seek(0, 2)
        start = max(0, size - tail) if offset is None else min(offset, size)
        fh.seek(start)
        data = fh.read(4 * 1024 * 1024)
        return data, start + len(data)


def status(request: Request) -> Response:
    from cron_scheduler.views import status_view
    return JSONResponse(status_view(home_of(request)))


def alerts(request: Request) -> Response:
    from cron_scheduler.notify.views import alert_rows
    return JSONResponse(alert_rows(home_of(request), int_param(request, "limit", 50, 1, MAX_LIMIT)))


# --- actions (the token is checked by the app before these run) ---------------------------

def _answer(kind: str, result: str | None, request_id: int) -> dict[str, Any]:
    from cron_scheduler.control import run_ids
    return {"request": kind, "request_id": request_id, "queued": result is None, "result": result,
            "run_ids": run_ids(result)}


def run_job(request: Request) -> Response:
    from cron_scheduler.control import send_request
    from cron_scheduler.jobs import JobService
    home, job_id = home_of(request), job_id_of(request)
    JobService(home).require([job_id])
    request_id, result = send_request(home, "run", {"jobs": [job_id], "no_deps": False})
    return JSONResponse(_answer("run", result, request_id))


def stop_job(request: Request) -> Response:
    from cron_scheduler.control import require_known_job, send_request
    home, job_id = home_of(request), job_id_of(request)
    require_known_job(home, job_id)
    request_id, result = send_request(home, "stop", {"jobs": [job_id], "all": False, "runs": []})
    return JSONResponse(_answer("stop", result, request_id))


def stop_run(request: Request) -> Response:
    from cron_scheduler.control import require_run, send_request
    home, run_id = home_of(request), run_id_of(request)
    require_run(home, run_id)
    request_id, result = send_request(home, "stop", {"jobs": [], "all": False, "runs": [run_id]})
    return JSONResponse(_answer("stop", result, request_id))


def rerun(request: Request) -> Response:
    from cron_scheduler.control import require_run, send_request
    home, run_id = home_of(request), run_id_of(request)
    require_run(home, run_id)
    request_id, result = send_request(home, "rerun", {"run_id": run_id})
    return JSONResponse(_answer("rerun", result, request_id))


def set_enabled(enabled: bool):
    def endpoint(request: Request) -> Response:
        from cron_scheduler.jobs import JobService
        from cron_scheduler.views import show_view
        home, job_id = home_of(request), job_id_of(request)
        JobService(home).set_enabled([job_id], enabled)
        return JSONResponse(show_view(home, job_id))
    return endpoint
