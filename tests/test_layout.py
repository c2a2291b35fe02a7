"""The engine's boundary (docs/design.md): it talks to pools through executors/base.py only.
How a pool finds a run (pids, /proc, markers, cgroups, the runner's module state) stays in the
pool: no module of the engine imports the runner, the cgroups, the keeper or a pool itself."""

from __future__ import annotations

import ast
from pathlib import Path

import cron_scheduler.engine

ENGINE = Path(cron_scheduler.engine.__file__).parent
FORBIDDEN = ("cron_scheduler.runner", "cron_scheduler.cgroup", "cron_scheduler.keeper", "cron_scheduler.pool",
             "cron_scheduler.executors.dask", "cron_scheduler.executors.dask_worker")
# cgroup.limit_files only turns a job's limits into the values its RunSpec carries (no file, no
# process): the one name of cgroup.py the engine may use
ALLOWED = {("cron_scheduler.cgroup", "limit_files")}


def imports(path: Path) -> set[tuple[str, str | None]]:
    """(module, name) of every import in a module (name None for `import module`)."""
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, None) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {(node.module, alias.name) for alias in node.names}
            if node.module == "cron_scheduler":  # from cron_scheduler import runner
                found |= {(f"cron_scheduler.{alias.name}", None) for alias in node.names}
    return found


def forbidden(path: Path) -> set[tuple[str, str | None]]:
    return {(module, name) for module, name in imports(path)
            if module in FORBIDDEN and (module, name) not in ALLOWED}


def test_no_module_of_the_engine_imports_the_runner_or_a_pool():
    modules = sorted(ENGINE.glob("*.py"))
    assert len(modules) >= 8
    assert {path.name: sorted(map(str, bad)) for path in modules if (bad := forbidden(path))} == {}


def test_the_lint_sees_each_form_of_a_forbidden_import(tmp_path):
    for line in ("from cron_scheduler import runner", "import cron_scheduler.runner",
                 "from cron_scheduler.runner import find_marked", "from cron_scheduler.pool import Pool",
                 "from cron_scheduler.cgroup import detect"):
        (tmp_path / "m.py").write_text(line + "\n")
        assert forbidden(tmp_path / "m.py"), line
    (tmp_path / "m.py").write_text("from cron_scheduler.cgroup import limit_files\n"
                                   "from cron_scheduler.executors.base import Pool\n")
    assert forbidden(tmp_path / "m.py") == set()
