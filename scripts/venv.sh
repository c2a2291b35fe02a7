# Sourced by test.sh and demo.sh: make sure $venv has the package installed (editable, with its
# test extras), reinstalling only when the packaging metadata changed since the last install
# (code changes need none: the install is editable).
venv=${CRON_SCHEDULER_VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
stamp="$venv/.cron-scheduler-installed"
if [ ! -f "$stamp" ] || [ "$root/setup.cfg" -nt "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  # pip warns about each unreachable --find-links/index location a machine's pip.conf names;
  # those lines say nothing about this project, so only they are dropped.
  {
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    # the distribution was called cron-scheduler before (a name PyPI gives another project)
    "$venv/bin/python" -m pip uninstall --quiet --yes cron-scheduler 2>/dev/null || true
    "$venv/bin/python" -m pip install --quiet -e "$root[test,web,dask]"
  } 2> >(grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory\.$" >&2)
  touch "$stamp"
fi
