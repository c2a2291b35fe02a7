#!/usr/bin/env bash
# Create or update the project venv, install the package with its test extras, run pytest.
# Extra arguments go to pytest:  ./scripts/test.sh -m "not slow" -x
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/venv.sh"
cd "$root"
export PATH="$venv/bin:$PATH"
# The dashboard's browser test drives Debian's chromium through chromedriver: install them when
# missing (as root, with apt-get); otherwise that test fails and says why.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium and chromium-driver for the browser test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
      >/dev/null || echo "test.sh: could not install chromium; the browser test will fail" >&2
  fi
fi
exec "$venv/bin/python" -m pytest "$@"
