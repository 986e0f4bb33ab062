"""Make a noisy linear dataset (y = 3x + 2 + noise) and split it into train and test CSVs."""

import argparse
import csv
import os
import random

from pipelines.sdk import Run

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=500)
parser.add_argument("--output", required=True)
args = parser.parse_args()

rng = random.Random(7)  # noqa: S311 - sample data, not secrets
rows = [(x, 3 * x + 2 + rng.gauss(0, 0.5)) for x in (rng.uniform(-3, 3) for _ in range(args.rows))]
split = int(len(rows) * 0.8)
os.makedirs(args.output, exist_ok=True)
for name, part in (("train.csv", rows[:split]), ("test.csv", rows[split:])):
    with open(os.path.join(args.output, name), "w", newline="") as fh:
        csv.writer(fh).writerows([("x", "y"), *part])
Run.get_context().log("rows", len(rows))
print(f"Wrote {split} training rows and {len(rows) - split} test rows to {args.output}")
