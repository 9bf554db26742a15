#!/usr/bin/env python3
"""The PyTorch reference service for the `fsvfm serve` benchmark: FastAPI + uvicorn + timm, doing
the work `POST /v1/detect?crops=true` does: decode the uploaded face crop (PIL), resize to 224
(bicubic) when needed, normalise (VGGFace2 mean/std), score with the timm ViT classifier (FSFM
head: global average pool + fc_norm + Linear(D, 2)), softmax, answer
`{"faces":[{"p_fake","verdict"}],"p_fake","verdict"}`. Concurrent requests are batched like ours:
an asyncio queue gathers up to --batch-size crops, waiting at most --batch-wait-ms, and one worker
thread runs the forward pass (`torch.set_num_threads(--threads)`, inference mode).

Loopback only. Usage: python torch_service.py --weights W.pth --preset vit_small_patch16 --port P
"""
import argparse
import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

MEAN = torch.tensor([0.5482207536697388, 0.42340534925460815, 0.3654651641845703]).view(3, 1, 1)
STD = torch.tensor([0.2789176106452942, 0.2438540756702423, 0.23493893444538116]).view(3, 1, 1)
# (width, depth, heads) as fsvfm's presets: FSFM's ViT-S has 12 heads (timm's vit_small has 6).
PRESETS = {"vit_small_patch16": (384, 12, 12), "vit_base_patch16": (768, 12, 12)}


def build(preset):
    d, depth, heads = PRESETS[preset]
    return VisionTransformer(img_size=224, patch_size=16, embed_dim=d, depth=depth, num_heads=heads,
                             mlp_ratio=4.0, qkv_bias=True, num_classes=2, global_pool="avg", fc_norm=True,
                             norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = build(a.preset)
    model.load_state_dict(torch.load(a.weights, map_location="cpu", weights_only=True)["model"])
    pool = ThreadPoolExecutor(1)
    app = FastAPI()
    queue = None

    def decode(data):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if img.size != (224, 224):
            img = img.resize((224, 224), Image.BICUBIC)
        t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
        return (t - MEAN) / STD

    def forward(batch):
        with torch.inference_mode():
            return model(torch.stack(batch)).softmax(1)[:, 0].tolist()

    async def batcher():
        loop = asyncio.get_running_loop()
        while True:
            items = [await queue.get()]
            deadline = loop.time() + a.batch_wait_ms / 1e3
            while len(items) < a.batch_size:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                p = await loop.run_in_executor(pool, forward, [x for x, _ in items])
                for (_, fut), s in zip(items, p):
                    fut.set_result(s)
            except Exception as e:  # noqa: BLE001 (every waiting request gets the error)
                for _, fut in items:
                    fut.set_exception(e)

    @app.on_event("startup")
    async def start():
        nonlocal queue
        queue = asyncio.Queue()
        asyncio.get_running_loop().create_task(batcher())

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.post("/v1/detect")
    async def detect(request: Request):
        data = await request.body()
        try:
            x = decode(data)
        except Exception as e:  # noqa: BLE001
            return JSONResponse({"error": {"code": "unreadable_media", "message": str(e)}}, status_code=400)
        fut = asyncio.get_running_loop().create_future()
        await queue.put((x, fut))
        p = await fut
        v = "fake" if p >= 0.5 else ("suspect" if p >= 0.3 else "real")
        return {"faces": [{"p_fake": p, "verdict": v}], "p_fake": p, "verdict": v}

    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
