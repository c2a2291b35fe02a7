#!/usr/bin/env bash
# Set up a venv, apply the example pipelines of examples/ to a demo home, and start the daemon
# on them. DEMO_SECONDS=N stops the daemon after N seconds (used to check the demo in CI-like runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/venv.sh"
export PATH="$venv/bin:$PATH"
home=${DEMO_HOME:-$root/demo-home}
mkdir -p "$home"
chmod 700 "$home"
export CRON_SCHEDULER_HOME="$home"
# The examples run from a copy inside the home: their output (work/) stays out of the repository.
rm -rf "$home/examples"
cp -R "$root/examples" "$home/examples"
rm -rf "$home/examples/work"
for file in maintenance files fetch etl dag; do
  echo "== cron-scheduler apply examples/$file.yaml"
  cron-scheduler apply "$home/examples/$file.yaml"
done
# The examples' schedules are minutes to days away: this one fires every 10 seconds, so the
# daemon shows a run within seconds of starting (add warns that no daemon runs yet: it starts below).
echo "== create_cron heartbeat @every 10s"
cron-scheduler add heartbeat --replace --description "the demo's heartbeat: fires every 10 seconds" \
  "@every 10s" /bin/date
echo
cron-scheduler list
echo
cat <<TXT
Starting the daemon in the foreground on $home (Ctrl-C stops it cleanly).
In another terminal, with CRON_SCHEDULER_HOME=$home and PATH=$venv/bin:\$PATH:
  cron-scheduler status                       # the daemon, running runs, what is due next
  cron-scheduler history heartbeat            # a run every 10 seconds, from the first seconds on
  cron-scheduler run job_3 job_8 job_9        # start the DAG now; its downstream jobs follow
  cron-scheduler run etl-extract --wait       # extract -> transform -> load
  cron-scheduler history                      # what ran, when, how it ended
  cron-scheduler graph                        # the dependency graph
  cron-scheduler logs job_1 --follow          # a run's output as it is written
  cron-scheduler export                       # the jobs as a pipeline file again
Outputs land in $home/examples/work/.
TXT
if [ -n "${DEMO_SECONDS:-}" ]; then
  "$venv/bin/python" -m cron_scheduler.scheduler &
  daemon=$!
  sleep 2
  cron-scheduler run job_3 job_8 job_9 sales-report etl-extract --wait --timeout "$DEMO_SECONDS" || true
  for _ in $(seq "$DEMO_SECONDS"); do  # and the heartbeat fires on its own within seconds
    cron-scheduler history heartbeat --status succeeded --json | grep -q '"trigger": "schedule"' && break
    sleep 1
  done
  kill -INT "$daemon"
  wait "$daemon" || true
  cron-scheduler history --limit 20
else
  exec "$venv/bin/python" -m cron_scheduler.scheduler
fi
