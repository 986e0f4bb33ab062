"""Step 1: read the split settings from the datastore, split scikit-learn's breast cancer
dataset into train and test sets, and write them as CSV files to the step's output."""

import argparse
import json
import os

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from pipelines.sdk import Run

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
parser.add_argument("--output", required=True)
args = parser.parse_args()

path = args.input
if os.path.isdir(path):
    path = os.path.join(path, "split.json")
with open(path) as fh:
    settings = json.load(fh)
print(f"Split settings: {settings}")

data = load_breast_cancer()
x_train, x_test, y_train, y_test = train_test_split(
    data.data,
    data.target,
    test_size=settings["test_size"],
    random_state=settings["random_state"],
    stratify=data.target,
)
os.makedirs(args.output, exist_ok=True)
np.savetxt(
    os.path.join(args.output, "train.csv"), np.column_stack([x_train, y_train]), delimiter=","
)
np.savetxt(os.path.join(args.output, "test.csv"), np.column_stack([x_test, y_test]), delimiter=",")

run = Run.get_context()
run.log("train_rows", len(y_train))
run.log("test_rows", len(y_test))
run.log("features", data.data.shape[1])
print(f"Wrote {len(y_train)} training and {len(y_test)} test rows to {args.output}")
