#!/usr/bin/env python3
"""Export reference calibrations computed with scikit-learn for `fsvfm-eval::calibration`.

Temperature scaling of a two-class head is a one-feature logistic regression without intercept:
P(fake) = sigmoid(beta * margin), margin = logit_fake - logit_real, T = 1 / beta. scikit-learn's
`LogisticRegression(fit_intercept=False, C=np.inf)` (no penalty) fits beta by its own optimiser (lbfgs), an
implementation independent of the Rust bisection. The threshold at a target FPR is read off
sklearn's full ROC curve (`roc_curve(..., drop_intermediate=False)`): the largest TPR whose FPR is
at most the target, ties broken toward the larger threshold.

Usage (from the repository root):
    tools/reference/setup.sh && tools/reference/.venv/bin/python tools/reference/export_calibration_fixtures.py
"""

import json
import os

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve

OUT = os.path.join(os.path.dirname(__file__), "../../crates/fsvfm-eval/tests/fixtures/calibration_sklearn.json")


def case(seed, n_real, n_fake, shift, scale):
    rng = np.random.default_rng(seed)
    # Overconfident margins (scale > 1) as fine-tuned heads give, with overlapping classes.
    m = np.concatenate([rng.normal(-shift, 1.0, n_real), rng.normal(shift, 1.0, n_fake)]) * scale
    y = np.concatenate([np.zeros(n_real, int), np.ones(n_fake, int)])
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10000)
    lr.fit(m.reshape(-1, 1), y)
    beta = float(lr.coef_[0, 0])
    p = 1.0 / (1.0 + np.exp(-beta * m))
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    points = []
    for target in [0.01, 0.05, 0.1, 0.25]:
        ok = [i for i in range(len(fpr)) if fpr[i] <= target and np.isfinite(thr[i])]
        best = max(ok, key=lambda i: (tpr[i], thr[i]))
        points.append({"target_fpr": target, "threshold": float(thr[best]),
                       "tpr": float(tpr[best]), "fpr": float(fpr[best])})
    return {"seed": seed, "labels": y.tolist(), "margins": m.tolist(), "temperature": 1.0 / beta,
            "probabilities": p.tolist(), "thresholds": points}


def main():
    cases = [case(0, 200, 150, 1.0, 4.0), case(1, 60, 90, 0.5, 0.5), case(2, 500, 500, 1.5, 8.0)]
    with open(OUT, "w") as f:
        json.dump({"generator": "sklearn LogisticRegression(fit_intercept=False, C=inf) + roc_curve",
                   "cases": cases}, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
