"""HTTP GET of $FETCH_URL with a timeout ($FETCH_TIMEOUT seconds, default 10), saved
atomically to $FETCH_OUT (a temp file in the same directory, renamed over it: a reader never
sees half a download). Exits 1 on an HTTP error or a network failure, so the job's retries
take over."""

import os
import sys
import tempfile
import urllib.error
import urllib.request

url = os.environ.get("FETCH_URL")
out = os.environ.get("FETCH_OUT", "work/fetched.html")
timeout = float(os.environ.get("FETCH_TIMEOUT", "10"))
if not url:
    sys.exit("fetch: set FETCH_URL")
try:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
except (urllib.error.URLError, OSError) as exc:
    sys.exit(f"fetch: {url}: {getattr(exc, 'reason', exc)}")
directory = os.path.dirname(os.path.abspath(out))
os.makedirs(directory, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fetch.")
try:
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
except BaseException:
    os.unlink(tmp)
    raise
print(f"fetched {url}: {len(body)} bytes -> {out}")
