#!/usr/bin/env bash
# Set up a venv, add a few example jobs to a demo home and show them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CRON_SCHEDULER_VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install --quiet -e "$root"
export PATH="$venv/bin:$PATH"
home=${DEMO_HOME:-$root/demo-home}
mkdir -p "$home"
export CRON_SCHEDULER_HOME="$home"
cat > "$home/hello.py" <<'PY'
import datetime, os
print(f"hello from {os.environ.get('CRON_SCHEDULER_JOB')} at {datetime.datetime.now():%H:%M:%S}")
PY
create_cron hello --replace --interval 1 "*/10 * * * * *" "$home/hello.py"
create_cron extract --replace --timeout 30s "@every 30s" /bin/sh --no-check -- -c "echo extracting; sleep 1"
create_cron transform --replace --depends-on extract @after /bin/echo transformed
create_cron nightly --replace --tz Europe/Berlin "30 2 * * *" /bin/echo nightly
cron-scheduler list
cron-scheduler next nightly --count 3
