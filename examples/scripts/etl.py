"""A small extract -> transform -> load pipeline over work/etl/, one stage per call:
  etl.py extract    data/sales.csv -> work/etl/raw.json (the rows as read)
  etl.py transform  raw.json -> clean.json (typed, revenue computed, bad rows dropped)
  etl.py load       clean.json -> work/etl/warehouse.db (SQLite table `sales`, replaced whole)
Each stage writes its output atomically and fails (exit 1) when its input is missing."""

import csv
import json
import os
import sqlite3
import sys

stage = sys.argv[1]
work = os.environ.get("ETL_DIR", "work/etl")
os.makedirs(work, exist_ok=True)


def write_json(name, data):
    path = os.path.join(work, name)
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)
    print(f"{stage}: wrote {len(data)} rows to {path}")


def read_json(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        sys.exit(f"{stage}: {path} is missing: did the previous stage run?")
    with open(path) as fh:
        return json.load(fh)


if stage == "extract":
    with open(os.environ.get("ETL_SOURCE", "data/sales.csv"), newline="") as fh:
        write_json("raw.json", list(csv.DictReader(fh)))
elif stage == "transform":
    clean = []
    for row in read_json("raw.json"):
        try:
            units, price = int(row["units"]), float(row["price"])
        except (KeyError, ValueError):
            continue
        clean.append({"date": row["date"], "region": row["region"], "product": row["product"],
                      "units": units, "revenue": round(units * price, 2)})
    write_json("clean.json", clean)
elif stage == "load":
    rows = read_json("clean.json")
    db = os.path.join(work, "warehouse.db")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS sales")
        conn.execute("CREATE TABLE sales (date TEXT, region TEXT, product TEXT, units INTEGER, revenue REAL)")
        conn.executemany("INSERT INTO sales VALUES (:date, :region, :product, :units, :revenue)", rows)
    print(f"load: {len(rows)} rows into {db}")
else:
    sys.exit(f"etl.py: unknown stage {stage!r}: use extract, transform or load")
