#!/usr/bin/env python3
"""Export reference outputs of the training augmentations for `fsvfm-data::augment`.

Every operation is run with the library the official code runs (Pillow for resizing and the timm
RandAugment ops, OpenCV for the FAS colour jitter, timm for the Mixup/CutMix targets and pasting),
on one small non-square RGB image cut from the public-domain astronaut photo, with *given*
parameters (magnitude, sign, crop box, mixing weight), so the Rust side can replay them exactly.
Randomness itself (Python/NumPy streams) is not compared: only what each drawn value does.

The RandAugment level -> argument formulas are written out here as timm 0.4.5 has them (the
version FSFM pins); the PIL-level op functions come from the installed timm.

Usage (from the repository root):
    tools/reference/setup.sh && tools/reference/.venv/bin/python tools/reference/export_augment_fixtures.py

Writes `crates/fsvfm-data/tests/fixtures/augment/`: `input.npy` (uint8 [H, W, 3]), one
`<case>.npy` per case, and `cases.json` describing each case.
"""

import json
import os
import sys

import cv2
import numpy as np
import PIL
import timm
import torch
from PIL import Image
from timm.data import auto_augment as aa
import timm.data.mixup
from timm.data.mixup import Mixup

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "crates", "fsvfm-data", "tests", "fixtures", "augment")
PHOTO = os.path.join(ROOT, "crates", "fsvfm-faces", "tests", "fixtures", "astronaut.jpg")
FILL = (140, 108, 93)  # round(255 * VGGFace2 mean), the RandAugment fill colour


def level_args(name, m, negate):
    """timm 0.4.5 `LEVEL_TO_ARG` for the increasing variants, with the sign given."""
    s = -1.0 if negate else 1.0
    f = m / 10.0
    return {
        "AutoContrast": (),
        "Equalize": (),
        "Invert": (),
        "Rotate": (s * f * 30.0,),
        "Posterize": (4 - int(f * 4),),
        "Solarize": (256 - int(f * 256),),
        "SolarizeAdd": (int(f * 110),),
        "Color": (1.0 + s * f * 0.9,),
        "Contrast": (1.0 + s * f * 0.9,),
        "Brightness": (1.0 + s * f * 0.9,),
        "Sharpness": (1.0 + s * f * 0.9,),
        "ShearX": (s * f * 0.3,),
        "ShearY": (s * f * 0.3,),
        "TranslateXRel": (s * f * 0.45,),
        "TranslateYRel": (s * f * 0.45,),
    }[name]


OPS = {
    "AutoContrast": aa.auto_contrast,
    "Equalize": aa.equalize,
    "Invert": aa.invert,
    "Rotate": aa.rotate,
    "Posterize": aa.posterize,
    "Solarize": aa.solarize,
    "SolarizeAdd": aa.solarize_add,
    "Color": aa.color,
    "Contrast": aa.contrast,
    "Brightness": aa.brightness,
    "Sharpness": aa.sharpness,
    "ShearX": aa.shear_x,
    "ShearY": aa.shear_y,
    "TranslateXRel": aa.translate_x_rel,
    "TranslateYRel": aa.translate_y_rel,
}


def rand_bbox_045(img_shape, lam, margin=0.0, count=None):
    """timm 0.4.5 `rand_bbox` (the version FSFM pins): the box spans `cy - cut//2 .. cy + cut//2`
    (timm >= 0.9 ends at `cy + (cut + 1)//2`)."""
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    cy = np.random.randint(0, img_h, size=count)
    cx = np.random.randint(0, img_w, size=count)
    yl = np.clip(cy - cut_h // 2, 0, img_h)
    yh = np.clip(cy + cut_h // 2, 0, img_h)
    xl = np.clip(cx - cut_w // 2, 0, img_w)
    xh = np.clip(cx + cut_w // 2, 0, img_w)
    return yl, yh, xl, xh


def main():
    timm.data.mixup.rand_bbox = rand_bbox_045
    os.makedirs(OUT, exist_ok=True)
    photo = Image.open(PHOTO).convert("RGB")
    # A face-and-suit cut with saturated colours, shrunk to 48 x 40 (W x H, non-square on purpose).
    src = photo.crop((130, 30, 370, 230)).resize((48, 40), Image.BICUBIC)
    np.save(os.path.join(OUT, "input.npy"), np.asarray(src, dtype=np.uint8))
    cases = []

    def save(name, img, **meta):
        arr = np.asarray(img, dtype=np.uint8)
        np.save(os.path.join(OUT, f"{name}.npy"), arr)
        cases.append(dict(name=name, **meta))

    # Pillow resize (down, up, one axis only), both filters; a torchvision resized_crop.
    for filt, pil in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        for w, h in ((20, 17), (67, 53), (48, 25), (30, 40)):
            save(f"resize_{filt}_{w}x{h}", src.resize((w, h), pil), kind="resize", filter=filt, size=[w, h])
        save(f"crop_resize_{filt}", src.crop((5, 3, 5 + 30, 3 + 28)).resize((24, 24), pil),
             kind="crop_resize", filter=filt, box=[5, 3, 30, 28], size=[24, 24])

    # RandAugment ops (increasing variants), magnitudes 9 and 4.3, both signs where signed.
    kwargs = dict(fillcolor=FILL, resample=Image.BILINEAR)
    for name, fn in OPS.items():
        for m in (9.0, 4.3):
            for negate in (False, True):
                args = level_args(name, m, negate)
                if negate and level_args(name, m, False) == args:
                    continue
                out = fn(src, *args, **dict(kwargs))
                save(f"ra_{name}_{m}_{'neg' if negate else 'pos'}", out, kind="rand_augment", op=name,
                     magnitude=m, negate=negate, args=list(args))

    # FAS colour jitter: cv2 float HSV round trip, S scaled in place (float32), astype(uint8).
    bgr = cv2.cvtColor(np.asarray(src), cv2.COLOR_RGB2BGR)
    for factor in (1.0, 0.85, 1.2):
        img = bgr.astype(np.float32)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[..., 1] *= np.float32(factor)
        img = cv2.cvtColor(img, cv2.COLOR_HSV2RGB)
        save(f"fas_saturation_{factor}", img.astype(np.uint8), kind="fas_saturation", factor=factor)

    # Mixup / CutMix on a float batch [4, 3, 8, 6] with given lambda; the box from rand_bbox.
    rng = np.random.default_rng(5)
    batch = rng.standard_normal((4, 3, 8, 6)).astype(np.float32)
    labels = np.array([0, 1, 1, 0])
    np.save(os.path.join(OUT, "mix_batch.npy"), batch)
    mix = []
    for mode, lam in (("mixup", 0.7), ("cutmix", 0.6), ("cutmix", 0.2)):
        m = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2)
        m._params_per_batch = lambda lam=lam, mode=mode: (lam, mode == "cutmix")
        np.random.seed(3)
        cy = int(np.random.randint(0, 8))
        cx = int(np.random.randint(0, 6))
        np.random.seed(3)
        x = torch.from_numpy(batch.copy())
        x_out, target = m(x, torch.from_numpy(labels))
        np.random.seed(3)
        box = [int(v) for v in rand_bbox_045((4, 3, 8, 6), lam)] if mode == "cutmix" else None
        np.save(os.path.join(OUT, f"mix_{mode}_{lam}.npy"), x_out.numpy())
        mix.append(dict(mode=mode, lam=lam, cy=cy, cx=cx, box=box,
                        target=target.numpy().round(8).tolist(),
                        file=f"mix_{mode}_{lam}.npy"))

    meta = dict(
        generator="tools/reference/export_augment_fixtures.py",
        versions=dict(pillow=PIL.__version__, timm=timm.__version__, opencv=cv2.__version__,
                      numpy=np.__version__, torch=torch.__version__),
        fill=list(FILL), labels=labels.tolist(), cases=cases, mix=mix,
    )
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"wrote {len(cases)} image cases and {len(mix)} mix cases to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
