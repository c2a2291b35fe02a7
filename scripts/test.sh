#!/usr/bin/env bash
# Create or update the project venv, install the package with its test extras, run pytest.
# Extra arguments go to pytest:  ./scripts/test.sh -m "not slow" -x
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/venv.sh"
cd "$root"
export PATH="$venv/bin:$PATH"
exec "$venv/bin/python" -m pytest "$@"
