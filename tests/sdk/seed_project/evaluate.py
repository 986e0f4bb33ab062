"""Step 3: evaluate the model on the test split at a decision threshold given as a pipeline
parameter; log the metrics and write them as a report."""

import argparse
import json
import os
import pickle

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from pipelines.sdk import Run

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--output", required=True)
parser.add_argument("--threshold", type=float, required=True)
args = parser.parse_args()

test = np.loadtxt(os.path.join(args.data, "test.csv"), delimiter=",")
x, y = test[:, :-1], test[:, -1].astype(int)
with open(os.path.join(args.model, "model.pkl"), "rb") as fh:
    model = pickle.load(fh)  # noqa: S301 - the model the previous step wrote
scores = model.predict_proba(x)[:, 1]
predicted = (scores >= args.threshold).astype(int)
report = {
    "threshold": args.threshold,
    "accuracy": round(float(accuracy_score(y, predicted)), 6),
    "f1": round(float(f1_score(y, predicted)), 6),
    "auc": round(float(roc_auc_score(y, scores)), 6),
    "test_rows": len(y),
}
run = Run.get_context()
for name in ("accuracy", "f1", "auc"):
    run.log(name, report[name])
run.log("threshold", args.threshold)
os.makedirs(args.output, exist_ok=True)
with open(os.path.join(args.output, "report.json"), "w") as fh:
    json.dump(report, fh, indent=2)
print(json.dumps(report))
