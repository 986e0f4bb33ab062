"""Step 2: train a logistic regression on the training split and save the model."""

import argparse
import os
import pickle

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.sdk import Run

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
parser.add_argument("--output", required=True)
args = parser.parse_args()

train = np.loadtxt(os.path.join(args.input, "train.csv"), delimiter=",")
x, y = train[:, :-1], train[:, -1].astype(int)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
model.fit(x, y)

run = Run.get_context()
run.log("train_accuracy", float(model.score(x, y)))
os.makedirs(args.output, exist_ok=True)
with open(os.path.join(args.output, "model.pkl"), "wb") as fh:
    pickle.dump(model, fh)
print(f"Trained on {len(y)} rows; model saved to {args.output}/model.pkl")
