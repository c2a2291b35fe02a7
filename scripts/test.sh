#!/usr/bin/env bash
# Create or update the project venv, install the package with its test extras, run pytest.
# Extra arguments go to pytest:  ./scripts/test.sh -m "not slow" -x
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CRON_SCHEDULER_VENV:-$root/.venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Reinstall only when the package metadata changed since the last install.
stamp="$venv/.cron-scheduler-installed"
if [ ! -f "$stamp" ] || [ "$root/setup.cfg" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root[test]"
  touch "$stamp"
fi
cd "$root"
export PATH="$venv/bin:$PATH"
exec "$venv/bin/python" -m pytest "$@"
