"""A real `cron-scheduler web` process on 127.0.0.1 (a free port) for the web tests, and a
small stdlib HTTP client for it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Env, child_env, free_port, wait_until


@dataclass
class Web:
    proc: subprocess.Popen
    base: str
    stderr_path: Path
    token: str

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, token: str | None = None, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if token is not None:
            headers["X-Token"] = token
        code, data, _ = self.request("POST", path, body or b"", headers)
        return code, json.loads(data or b"null")

    def json(self, path: str) -> Any:
        code, data, _ = self.get(path)
        assert code == 200, (path, code, data[:500])
        return json.loads(data)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_web(env: Env, *args: str, port: int | None = None) -> Web:
    """`cron-scheduler --home H web --bind 127.0.0.1:PORT ARGS...`; waits until it answers."""
    port = port or free_port()
    stderr_path = env.tmp / f"web{port}.stderr"
    cmd = [sys.executable, "-m", "cron_scheduler", "--home", str(env.home), "web", "--bind", f"127.0.0.1:{port}", *args]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=child_env(), cwd=env.tmp)
    token_path = env.home / "web.token"
    web = Web(proc, f"http://127.0.0.1:{port}", stderr_path, "")

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"web exited {proc.returncode}:\n{web.stderr()}")
        try:
            return web.get("/api/status")[0] == 200
        except OSError:
            return False

    wait_until("the web process answering", up, 30, 0.1, describe=web.stderr)
    web.token = token_path.read_text().strip() if token_path.exists() else ""
    return web
