#!/usr/bin/env python3
"""Export reference metric values computed with scikit-learn / SciPy for `fsvfm-eval`.

The Rust crate `fsvfm-eval` re-implements the evaluation metrics of the official FSFM / FS-VFM code
(`fsfm-3c/util/metrics.py` for deepfake detection, `cross_domain_FAS/utils/{statistic,evaluate}.py`
for face anti-spoofing).  This script generates a handful of seeded score sets, computes every
metric with the *reference* libraries exactly as the official code calls them, and writes one JSON
fixture that the Rust tests compare against.

Conventions (as in the Rust crate, see ARCHITECTURE.md): label 1 = fake / attack (the positive
class), 0 = real / bona fide; scores are P(fake), higher = more likely fake.  The official code uses
the opposite class indices (1 = real, score = P(real)); every formula below is applied with
"positive = fake" instead, which is what the Rust crate does too.

Usage (from the repository root):
    tools/reference/setup.sh && tools/reference/.venv/bin/python tools/reference/export_metrics_fixtures.py [--out PATH]

The default output path is `crates/fsvfm-eval/tests/fixtures/metrics_sklearn.json` relative to the
workspace root when the script lives in `tools/reference/`, or `../fsvfm-eval/tests/fixtures/` when
it sits next to the crate (helper layout); pass `--out` to override.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import scipy
import sklearn
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
    roc_curve,
)

SEED = 20240607
# Sets with at most this many samples also store their full ROC curves (keeps the JSON < 300 kB).
MAX_N_FOR_ROC = 400
# Number of tiny random sets (2-12 samples, scores with one decimal).
N_TINY = 150


# ---------------------------------------------------------------------------------------------
# Metric definitions, copied from the official code paths (only the class convention differs).
# ---------------------------------------------------------------------------------------------


def eer_brentq(labels, scores):
    """`fsfm-3c/util/metrics.py::frame_level_eer` plus its commented-out EER threshold line."""
    fpr, tpr, thresholds = roc_curve(labels, scores, pos_label=1)
    eer = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    eer_thresh = float(interp1d(fpr, thresholds)(eer))
    return float(eer), eer_thresh


# `cross_domain_FAS/utils/statistic.py` (FLIP / few_shot_fas lineage), verbatim except naming.
def eval_state(probs, labels, thr):
    predict = probs >= thr
    TN = np.sum((labels == 0) & (predict == False))  # noqa: E712 (kept as in the original)
    FN = np.sum((labels == 1) & (predict == False))  # noqa: E712
    FP = np.sum((labels == 0) & (predict == True))  # noqa: E712
    TP = np.sum((labels == 1) & (predict == True))  # noqa: E712
    return TN, FN, FP, TP


def get_threshold(grid_density):
    thresholds = []
    for i in range(grid_density + 1):
        thresholds.append(0.0 + i * 1.0 / float(grid_density))
    thresholds.append(1.1)
    return thresholds


def far_frr(probs, labels, thr):
    """FAR and FRR at `thr`, with the FAS code's conventions for a missing class."""
    TN, FN, FP, TP = eval_state(probs, labels, thr)
    if FN + TP == 0:
        return FP / float(FP + TN), 1.0
    if FP + TN == 0:
        return 1.0, FN / float(FN + TP)
    return FP / float(FP + TN), FN / float(FN + TP)


def get_EER_states(probs, labels, grid_density=10000):
    thresholds = get_threshold(grid_density)
    min_dist = 1.0
    min_dist_states = []
    for thr in thresholds:
        FAR, FRR = far_frr(probs, labels, thr)
        dist = math.fabs(FRR - FAR)
        if dist <= min_dist:
            min_dist = dist
            min_dist_states = [FAR, FRR, thr]
    EER = (min_dist_states[0] + min_dist_states[1]) / 2.0
    thr = min_dist_states[2]
    return float(EER), float(thr)


def get_HTER_at_thr(probs, labels, thr):
    FAR, FRR = far_frr(probs, labels, thr)
    return float((FAR + FRR) / 2.0)


def tpr_at_fpr_official(labels, scores, target=1 / 100):
    """`cross_domain_FAS/utils/evaluate.py`: last TPR of the default (drop_intermediate=True) ROC
    whose FPR is <= target; 0 if there is none."""
    fpr, tpr, _ = roc_curve(labels, scores)
    tpr_filtered = tpr[fpr <= target]
    return 0.0 if len(tpr_filtered) == 0 else float(tpr_filtered[-1])


def tpr_at_fpr_interp(labels, scores, target=1 / 100):
    """Alternative definition: the ROC linearly interpolated at FPR = target (np.interp, which is
    right-continuous on vertical segments)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.interp(target, fpr, tpr))


def video_level(labels, scores, videos):
    """`fsfm-3c/util/metrics.py::get_video_level_label_pred`: mean of frame scores per video id in
    order of first appearance; label of the first frame (our generator keeps labels consistent)."""
    res = {}
    for label, video, score in zip(labels.tolist(), videos, scores.tolist()):
        if video not in res:
            res[video] = {"scores": [score], "label": label}
        else:
            res[video]["scores"].append(score)
            assert res[video]["label"] == label
    ids = list(res.keys())
    v_scores = np.array([sum(r["scores"]) / len(r["scores"]) for r in res.values()])
    v_labels = np.array([r["label"] for r in res.values()])
    return ids, v_labels, v_scores


# ---------------------------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------------------------


def num(x):
    """Finite floats as JSON numbers (Python's repr round-trips exactly); +-inf as strings."""
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        raise ValueError("NaN in a reference value")
    return x


def roc_json(labels, scores, drop_intermediate):
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=drop_intermediate)
    return {
        "fpr": [num(v) for v in fpr],
        "tpr": [num(v) for v in tpr],
        "thresholds": [num(v) for v in thr],
    }


def metrics_block(labels, scores, with_roc):
    eer, eer_thr = eer_brentq(labels, scores)
    grid_eer, grid_thr = get_EER_states(scores, labels)
    preds = (scores >= 0.5).astype(int)  # fsvfm-eval tie rule: score >= threshold -> fake
    out = {
        "n": int(len(labels)),
        "n_fake": int(labels.sum()),
        "auc": num(roc_auc_score(labels, scores)),
        "ap": num(average_precision_score(labels, scores)),
        "eer": num(eer),
        "eer_threshold": num(eer_thr),
        "hter_at_eer_threshold": num(get_HTER_at_thr(scores, labels, eer_thr)),
        "eer_grid": num(grid_eer),
        "eer_grid_threshold": num(grid_thr),
        "hter_at_grid_threshold": num(get_HTER_at_thr(scores, labels, grid_thr)),
        "acc_05": num(accuracy_score(labels, preds)),
        "balanced_acc_05": num(balanced_accuracy_score(labels, preds)),
        "tpr_at_fpr_1pct": num(tpr_at_fpr_official(labels, scores)),
        "tpr_at_fpr_1pct_interp": num(tpr_at_fpr_interp(labels, scores)),
    }
    if with_roc:
        out["roc"] = roc_json(labels, scores, True)
        out["roc_full"] = roc_json(labels, scores, False)
    return out


# ---------------------------------------------------------------------------------------------
# Score sets
# ---------------------------------------------------------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def continuous(rng, n, sep, frac_fake=0.5):
    labels = (rng.random(n) < frac_fake).astype(int)
    logits = rng.normal(0.0, 1.0, n) + sep * (2 * labels - 1) / 2
    # Rounded to 6 decimals so the JSON stays small; a few ties are a feature.
    return labels, np.round(sigmoid(logits), 6)


def video_set(rng, n_videos, frames_per_video, sep):
    """Frame scores = per-video offset + frame noise; video labels alternate randomly."""
    v_labels = (rng.random(n_videos) < 0.5).astype(int)
    v_labels[0], v_labels[1] = 0, 1  # both classes guaranteed
    labels, scores, videos = [], [], []
    order = rng.permutation(n_videos * frames_per_video)  # interleave frames of different videos
    for k in order:
        v = k // frames_per_video
        base = sep * (2 * v_labels[v] - 1) / 2 + rng.normal(0.0, 0.7)
        labels.append(int(v_labels[v]))
        scores.append(sigmoid(base + rng.normal(0.0, 1.0)))
        videos.append(f"vid{v:03d}")
    return np.array(labels), np.round(np.array(scores), 6), videos


def diagonal_ties():
    """Built so that sklearn's drop_intermediate changes TPR@FPR=1%: 200 reals (FPR step 0.5%),
    the three highest scores each shared by one real and one fake (collinear ROC points), then
    well-separated scores."""
    labels, scores = [], []
    for s in (0.99, 0.98, 0.97):
        labels += [1, 0]
        scores += [s, s]
    labels += [1] * 47 + [0] * 197
    scores += list(np.round(np.linspace(0.9, 0.4, 47), 6)) + list(np.round(np.linspace(0.6, 0.01, 197), 6))
    return np.array(labels), np.array(scores)


def build_cases():
    rng = np.random.RandomState(SEED)
    cases = []

    def add(name, labels, scores, videos=None):
        labels = np.asarray(labels, dtype=int)
        scores = np.asarray(scores, dtype=np.float64)
        case = {
            "name": name,
            "labels": labels.tolist(),
            "scores": [num(s) for s in scores],
            "videos": videos,
        }
        case.update(metrics_block(labels, scores, len(labels) <= MAX_N_FOR_ROC))
        if videos is not None:
            ids, v_labels, v_scores = video_level(labels, scores, videos)
            v_eer, _ = eer_brentq(v_labels, v_scores)
            case["video"] = {
                "ids": ids,
                "labels": v_labels.tolist(),
                "scores": [num(s) for s in v_scores],
                "auc": num(roc_auc_score(v_labels, v_scores)),
                "eer": num(v_eer),
                # FAS protocol metrics computed on per-video averaged scores
                "eer_grid": num(get_EER_states(v_scores, v_labels)[0]),
                "tpr_at_fpr_1pct": num(tpr_at_fpr_official(v_labels, v_scores)),
            }
        cases.append(case)

    l, s = continuous(rng, 200, 1.5)
    add("random_continuous", l, s)
    l, s = continuous(rng, 300, 1.0)
    add("heavy_ties", l, np.round(s, 1))  # 11 distinct values, including exactly 0.5
    l = np.array([0] * 25 + [1] * 25)
    add("perfect_separation", l, np.round(np.concatenate([rng.random(25) * 0.4, 0.6 + rng.random(25) * 0.4]), 6))
    add("inverted", l, np.round(np.concatenate([0.6 + rng.random(25) * 0.4, rng.random(25) * 0.4]), 6))
    add("small_n5", [0, 1, 0, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.35])
    add("all_tied", [0, 1, 0, 1, 0, 1], [0.5] * 6)
    l, s = continuous(rng, 505, 2.0, frac_fake=0.02)
    add("imbalanced_few_fakes", l, s)
    l, s = continuous(rng, 2000, 1.2)
    add("large_n2000", l, s)
    l, s = diagonal_ties()
    add("diagonal_ties", l, s)
    l, s, v = video_set(rng, 100, 20, 1.5)
    add("videos_100x20", l, s, v)
    l, s, v = video_set(rng, 150, 2, 1.0)
    add("videos_fas_150x2", l, np.round(s, 2), v)
    # Many tiny sets with heavy ties: every EER edge case (root inside a segment, at a vertical
    # jump with brentq ending left or right of it, on the first segment with threshold +inf,
    # exactly 0) shows up several times.
    for k in range(N_TINY):
        n = int(rng.randint(2, 13))
        l = rng.randint(0, 2, n)
        l[rng.randint(1, n)] = 1 - l[0]  # both classes
        add(f"tiny_{k:03d}", l, np.round(rng.random(n), 1))
    return cases


def default_out():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(here, "..", "..", "crates", "fsvfm-eval", "tests", "fixtures"),  # tools/reference/
        os.path.join(here, "..", "fsvfm-eval", "tests", "fixtures"),  # helper layout
    ]
    for c in candidates:
        if os.path.isdir(os.path.dirname(os.path.dirname(c))):  # the crate folder
            return os.path.normpath(os.path.join(c, "metrics_sklearn.json"))
    sys.exit("cannot find the fsvfm-eval crate; pass --out")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output JSON path")
    args = parser.parse_args()
    out = args.out or default_out()
    doc = {
        "generator": "export_metrics_fixtures.py",
        "seed": SEED,
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "sklearn": sklearn.__version__,
        },
        "conventions": "label 1 = fake (positive), 0 = real; score = P(fake); "
        "roc = roc_curve(drop_intermediate=True), roc_full = drop_intermediate=False; "
        "thresholds[0] = 'inf'",
        "cases": build_cases(),
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, allow_nan=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out} ({os.path.getsize(out) / 1024:.1f} kB, {len(doc['cases'])} cases)")


if __name__ == "__main__":
    main()
