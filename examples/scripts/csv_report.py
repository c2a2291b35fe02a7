"""Read a CSV of sales (date, region, product, units, price) and write a summary report:
units and revenue per region and per product, and the totals. Usage: csv_report.py IN.csv OUT.txt"""

import csv
import os
import sys
from collections import defaultdict

src, dst = sys.argv[1], sys.argv[2]
by_region, by_product = defaultdict(lambda: [0, 0.0]), defaultdict(lambda: [0, 0.0])
rows = 0
with open(src, newline="") as fh:
    for row in csv.DictReader(fh):
        units, revenue = int(row["units"]), int(row["units"]) * float(row["price"])
        for table, key in ((by_region, row["region"]), (by_product, row["product"])):
            table[key][0] += units
            table[key][1] += revenue
        rows += 1
lines = [f"Sales report for {src}: {rows} rows", ""]
for title, table in (("region", by_region), ("product", by_product)):
    lines.append(f"{'by ' + title:<12} {'units':>6} {'revenue':>10}")
    for key, (units, revenue) in sorted(table.items()):
        lines.append(f"{key:<12} {units:>6} {revenue:>10.2f}")
    lines.append("")
total_units = sum(u for u, _ in by_region.values())
total_revenue = sum(r for _, r in by_region.values())
lines.append(f"{'total':<12} {total_units:>6} {total_revenue:>10.2f}")
os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
with open(dst + ".tmp", "w") as fh:
    fh.write("\n".join(lines) + "\n")
os.replace(dst + ".tmp", dst)
print(f"wrote {dst}: {rows} rows, {total_units} units, {total_revenue:.2f} revenue")
