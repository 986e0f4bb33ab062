"""Fit y = w*x + b by gradient descent, logging the loss of every epoch."""

import argparse
import csv
import json
import os
import time

from pipelines.sdk import Run

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--epochs", type=int, default=40)
parser.add_argument("--output", required=True)
args = parser.parse_args()

with open(os.path.join(args.data, "train.csv")) as fh:
    rows = [(float(x), float(y)) for x, y in list(csv.reader(fh))[1:]]
run = Run.get_context()
w = b = 0.0
rate = 0.05
for epoch in range(1, args.epochs + 1):
    grad_w = sum((w * x + b - y) * x for x, y in rows) * 2 / len(rows)
    grad_b = sum(w * x + b - y for x, y in rows) * 2 / len(rows)
    w, b = w - rate * grad_w, b - rate * grad_b
    loss = sum((w * x + b - y) ** 2 for x, y in rows) / len(rows)
    run.log("loss", round(loss, 5))
    print(f"epoch {epoch:3d}  loss {loss:.5f}  w {w:.3f}  b {b:.3f}", flush=True)
    time.sleep(0.1)  # slow enough to watch the log and the chart grow in the portal
os.makedirs(args.output, exist_ok=True)
with open(os.path.join(args.output, "model.json"), "w") as fh:
    json.dump({"w": w, "b": b}, fh)
print(f"Model: y = {w:.3f} x + {b:.3f}")
