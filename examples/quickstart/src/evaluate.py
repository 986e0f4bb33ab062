"""Score the model on the test rows; count predictions within a tolerance (a parameter)."""

import argparse
import csv
import json
import math
import os

from pipelines.sdk import Run

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--tolerance", type=float, required=True)
parser.add_argument("--output", required=True)
args = parser.parse_args()

with open(os.path.join(args.model, "model.json")) as fh:
    model = json.load(fh)
with open(os.path.join(args.data, "test.csv")) as fh:
    rows = [(float(x), float(y)) for x, y in list(csv.reader(fh))[1:]]
errors = [model["w"] * x + model["b"] - y for x, y in rows]
report = {
    "rmse": round(math.sqrt(sum(e * e for e in errors) / len(errors)), 5),
    "within_tolerance": round(sum(abs(e) <= args.tolerance for e in errors) / len(errors), 5),
    "tolerance": args.tolerance,
}
run = Run.get_context()
for name, value in report.items():
    run.log(name, value)
os.makedirs(args.output, exist_ok=True)
with open(os.path.join(args.output, "report.json"), "w") as fh:
    json.dump(report, fh, indent=2)
print(json.dumps(report))
