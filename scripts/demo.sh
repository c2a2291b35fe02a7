#!/usr/bin/env bash
# Set up a venv, add a few example jobs to a demo home, show them and start the daemon on them.
# DEMO_SECONDS=N stops the daemon after N seconds (used to check the demo in CI-like runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/venv.sh"
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
echo
echo "Starting the daemon in the foreground on $home (Ctrl-C stops it cleanly)."
echo "In another terminal: CRON_SCHEDULER_HOME=$home $venv/bin/cron-scheduler history"
if [ -n "${DEMO_SECONDS:-}" ]; then
  timeout -s INT "$DEMO_SECONDS" "$venv/bin/python" -m cron_scheduler.scheduler || true
  cron-scheduler history --limit 10
else
  exec "$venv/bin/python" -m cron_scheduler.scheduler
fi
