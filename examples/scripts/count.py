"""Print a number ten times with short sleeps: a stand-in for real work in dag.yaml."""

import sys
import time

n = sys.argv[1]
for i in range(10):
    print(f"job {n}: {i + 1}/10", flush=True)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
