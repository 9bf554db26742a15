"""The official-style Python pre-processing side by side with `fsvfm prepare` (issue 4 figures).

FSFM crops faces with dlib's HOG detector (`get_frontal_face_detector()(rgb, 1)`, first face) and
FF++'s `get_boundingbox` (square, 1.3 x max side, clipped), then resizes to 224 bicubic (spec §4).
This script runs that pipeline through the PyPI wheel `dlib-bin` on the same photos, and reports:
- its speed (images/s; 1 process and a pool of 2), to compare with `fsvfm prepare`'s figure;
- the BlazeFace -> dlib box calibration (median centre shift and side ratio, in units of the
  BlazeFace box side): the constants of `DlibCalibration::FSFM_DLIB`;
- the IoU between the official crop box and ours, without and with that calibration.

Usage (after `fsvfm prepare --input PHOTOS --output OUT`):
    python3 -m venv /tmp/dlibvenv && /tmp/dlibvenv/bin/pip install dlib-bin pillow numpy
    /tmp/dlibvenv/bin/python tools/face/dlib_reference.py PHOTOS OUT/manifest.jsonl
"""
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

import dlib
import numpy as np
from PIL import Image

_detector = None


def get_boundingbox(l, t, r, b, width, height, scale=1.3):
    # FF++ / FSFM rule, integers as there.
    size = int(max(r - l, b - t) * scale)
    cx, cy = (l + r) // 2, (t + b) // 2
    x1 = max(int(cx - size // 2), 0)
    y1 = max(int(cy - size // 2), 0)
    size = min(width - x1, size)
    size = min(height - y1, size)
    return x1, y1, size


def official(args):
    path, out_dir = args
    global _detector
    if _detector is None:
        _detector = dlib.get_frontal_face_detector()
    img = Image.open(path).convert("RGB")
    rgb = np.asarray(img)
    faces = _detector(rgb, 1)
    if len(faces) == 0:
        return os.path.basename(path), None
    f = faces[0]
    h, w = rgb.shape[:2]
    x, y, s = get_boundingbox(f.left(), f.top(), f.right(), f.bottom(), w, h)
    crop = img.crop((x, y, x + s, y + s)).resize((224, 224), Image.BICUBIC)
    crop.save(os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".png"))
    return os.path.basename(path), [f.left(), f.top(), f.right(), f.bottom(), w, h]


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main():
    photos, manifest = sys.argv[1], sys.argv[2]
    files = sorted(os.path.join(photos, n) for n in os.listdir(photos)
                   if n.lower().endswith((".jpg", ".jpeg", ".png")))
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        res = [official((p, out)) for p in files]
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        with mp.Pool(2) as pool:
            pool.map(official, [(p, out) for p in files])
        t2 = time.perf_counter() - t
    dl = {name: box for name, box in res}
    found = sum(b is not None for b in dl.values())
    ours = {}
    for line in open(manifest):
        r = json.loads(line)
        if r.get("face_index", 0) == 0 and r.get("frame_index") is None:
            ours[os.path.basename(r["source"])] = r["box"]
    dx, dy, s, pairs = [], [], [], []
    for name, b in dl.items():
        if b is None or name not in ours:
            continue
        o = ours[name]
        side = max(o[2] - o[0], o[3] - o[1])
        ocx, ocy = (o[0] + o[2]) / 2, (o[1] + o[3]) / 2
        dcx, dcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        dx.append((dcx - ocx) / side)
        dy.append((dcy - ocy) / side)
        s.append(max(b[2] - b[0], b[3] - b[1]) / side)
        pairs.append((name, o, b))
    cal = dict(dx=float(np.median(dx)), dy=float(np.median(dy)), s=float(np.median(s)))

    def crop_iou(c):
        vals = []
        for _, o, b in pairs:
            w, h = b[4], b[5]
            side = max(o[2] - o[0], o[3] - o[1])
            cx = (o[0] + o[2]) / 2 + c["dx"] * side
            cy = (o[1] + o[3]) / 2 + c["dy"] * side
            half = c["s"] * side / 2
            q = [round(cx - half), round(cy - half), round(cx + half), round(cy + half)]
            x, y, sz = get_boundingbox(*q, w, h)
            X, Y, SZ = get_boundingbox(b[0], b[1], b[2], b[3], w, h)
            vals.append(iou([x, y, x + sz, y + sz], [X, Y, X + SZ, Y + SZ]))
        return float(np.mean(vals)), float(np.percentile(vals, 5))

    report = {
        "images": len(files),
        "dlib_detected": found,
        "dlib_images_per_s_1proc": len(files) / t1,
        "dlib_images_per_s_2proc": len(files) / t2,
        "calibration": cal,
        "calibration_spread_sd": dict(dx=float(np.std(dx)), dy=float(np.std(dy)), s=float(np.std(s))),
        "crop_iou_identity_mean_p5": crop_iou(dict(dx=0.0, dy=0.0, s=1.0)),
        "crop_iou_calibrated_mean_p5": crop_iou(cal),
        "compared": len(pairs),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
