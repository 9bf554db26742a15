#!/usr/bin/env python3
"""Reference fixtures for the Rust training crate (fsvfm-train): the FS-VFM pre-training step.

The PyTorch step follows the official `engine_pretrain.py` / `main_pretrain.py` as described in
../../shared/spec/method.md §1.4, §3, §5 (written from the spec, not copied):

  * online network on the masked view, target network on the full view under no_grad;
  * L = L_rec^m + 0.007 L_rec^fr + 0.1 L_sim (norm_pix, batch-level normalisation, -0.5 cos),
    with our one deliberate change: a covered region absent from the whole batch gives
    L_rec^fr = 0 instead of 0/0 = NaN;
  * loss / accum_iter, backward; on update steps clip_grad_norm_(1.0) and AdamW
    (betas 0.9/0.95, wd 0.05 except 1-D params and biases = timm add_weight_decay);
  * lr set on micro-steps where step % accum_iter == 0;
  * EMA of the target after every micro-step over the shared named parameters.

Writes crates/fsvfm-train/tests/fixtures/:
  init_online.safetensors, init_target.safetensors     the weights before training (official keys)
  after_online.safetensors, after_target.safetensors   the weights after the 4 micro-steps
  steps.safetensors                                    per micro-step x, mask, region; losses; grad norms;
                                                       per update the accumulated gradients (before clipping)
  steps.json                                           model config and the step schedule
  adapter_step.safetensors                             FS-Adapter on cached features: initial and
                                                       updated adapter/projector/head, losses
  finetune_step.safetensors, finetune_lr_scales.json   full fine-tuning with layer decay: weights
                                                       before/after two AdamW steps, losses, lr scales

Run:  tools/reference/setup.sh && tools/reference/.venv/bin/python tools/reference/export_train_fixtures.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_model_fixtures import FSFMOnline, FSFMTarget, classifier, randomize  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "fsvfm-train", "tests", "fixtures")


def losses(model, imgs, pred, x_mask, region, p, z):
    t = model.patchify(imgs)
    t = (t - t.mean(dim=-1, keepdim=True)) / (t.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
    e = ((pred - t) ** 2).mean(dim=-1)
    rec_m = (e * x_mask).sum() / x_mask.sum()
    rec_fr = (e * region).sum() / region.sum().clamp_min(1.0)
    sim = -0.5 * F.cosine_similarity(p, z, dim=-1).mean()
    return rec_m, rec_fr, sim, rec_m + 0.007 * rec_fr + 0.1 * sim


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def label_smoothing_ce(logits, target, smoothing):
    """timm LabelSmoothingCrossEntropy."""
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(dim=-1, index=target.unsqueeze(1)).squeeze(1)
    return ((1.0 - smoothing) * nll + smoothing * (-logp.mean(dim=-1))).mean()


def real_anchor_con_loss(c, labels, real_index=1, tau=0.07, base_tau=0.07):
    """SupCon with one view whose positives are real-real pairs only (spec §7)."""
    b = c.shape[0]
    real = labels == real_index
    if not real.any():
        return torch.tensor(1e-6)
    s = c @ c.T / tau
    logits = s - s.max(dim=1, keepdim=True)[0].detach()
    logits_mask = 1.0 - torch.eye(b)
    pos = (real[:, None] & real[None, :]).float() * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True) + 1e-6)
    n_pos = pos.sum(1)
    n_pos = torch.where(n_pos < 1e-6, torch.ones_like(n_pos), n_pos)
    mean_log_prob_pos = (pos * log_prob).sum(1) / n_pos
    return (-(tau / base_tau) * mean_log_prob_pos).mean()


def adapter_step(gen):
    """FS-Adapter on cached pooled features: CE (smoothing 0.1) + 0.1 * Real-Anchor loss, AdamW
    (wd 0, as the DfD recipe) for two steps; official keys and class order (0 = fake, 1 = real)."""
    d, r = 32, 4
    heads = torch.nn.ModuleDict({
        "adapter": torch.nn.ModuleDict({"linear1": torch.nn.Linear(d, d // r, bias=False),
                                        "linear2": torch.nn.Linear(d // r, d, bias=False)}),
        "projector": torch.nn.Linear(d // r, d // r),
        "head": torch.nn.Linear(2 * d, 2),
    })
    with torch.no_grad():
        for p in heads.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    init = {k: v.detach().clone().contiguous() for k, v in heads.state_dict().items()}
    h = torch.randn(8, d, generator=gen)
    y = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])  # official class index: 1 = real
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-2, weight_decay=0.0, foreach=False)
    out = {}
    for step in range(2):
        b = F.relu(heads["adapter"]["linear1"](h))
        u = F.relu(heads["adapter"]["linear2"](b))
        logits = heads["head"](torch.cat([h, u], dim=1))
        c = F.normalize(heads["projector"](b), dim=-1)
        ce = label_smoothing_ce(logits, y, 0.1)
        rac = real_anchor_con_loss(c, y)
        total = ce + 0.1 * rac
        out[f"adapter.step{step}.losses"] = torch.stack([ce, rac, total]).detach()
        opt.zero_grad()
        total.backward()
        opt.step()
    # The loss on a batch without real samples is the official constant.
    out["adapter.no_real"] = real_anchor_con_loss(c.detach(), torch.zeros(8, dtype=torch.long)).reshape(1)
    out["adapter.h"] = h
    out["adapter.labels"] = y.float()
    save_file({**{f"init.{k}": v for k, v in init.items()},
               **{f"after.{k}": v.detach().contiguous() for k, v in heads.state_dict().items()}, **out},
              os.path.join(OUT, "adapter_step.safetensors"))


def param_groups_lrd(model, weight_decay, layer_decay, no_weight_decay=("pos_embed", "cls_token")):
    """BEiT/MAE layer-wise lr decay (`util/lr_decay.py`): layer 0 = cls_token, pos_embed, patch_embed;
    blocks.k = k + 1; the rest (fc_norm, head) = depth + 1; scale = ld^(depth + 1 - layer)."""
    num_layers = len(model.blocks) + 1
    groups = {}
    scales = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim == 1 or n in no_weight_decay)
        if n in ("cls_token", "pos_embed") or n.startswith("patch_embed"):
            layer = 0
        elif n.startswith("blocks."):
            layer = int(n.split(".")[1]) + 1
        else:
            layer = num_layers
        scale = layer_decay ** (num_layers - layer)
        scales[n] = scale
        key = (layer, decay)
        groups.setdefault(key, {"params": [], "lr_scale": scale, "weight_decay": weight_decay if decay else 0.0})
        groups[key]["params"].append(p)
    return list(groups.values()), scales


def finetune_step(gen):
    """Full fine-tuning: a mean-pooled timm ViT (the official classifier), label-smoothed CE (0.1; the
    no-mixup case), layer-wise lr decay 0.65, wd 0.05, AdamW default betas, two steps."""
    model = classifier(32, 8, 32, 2, 2)
    model.pos_embed.requires_grad_(True)
    randomize(model, gen)
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32, generator=gen)
    y = torch.tensor([0, 1, 1, 0])
    groups, scales = param_groups_lrd(model, 0.05, 0.65)
    opt = torch.optim.AdamW(groups, lr=1e-3, foreach=False)
    model.train()
    losses = []
    for step in range(2):
        for g in opt.param_groups:
            g["lr"] = [1e-3, 5e-4][step] * g["lr_scale"]
        loss = label_smoothing_ce(model(x), y, 0.1)
        losses.append(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_file({**{f"init.{k}": v for k, v in init.items()},
               **{f"after.{k}": v.detach().contiguous() for k, v in model.state_dict().items()},
               "x": x, "labels": y.float(), "losses": torch.stack(losses)},
              os.path.join(OUT, "finetune_step.safetensors"))
    with open(os.path.join(OUT, "finetune_lr_scales.json"), "w") as f:
        json.dump(scales, f, indent=1, sort_keys=True)


def finetune_mixup_step():
    """One fine-tuning step on a Mixup batch (lam 0.7, batch mode, the flipped batch as partner):
    timm `Mixup` mixes the images and builds the smoothed soft targets (smoothing 0.1), timm
    `SoftTargetCrossEntropy` is the loss; layer decay 0.65, wd 0.05, AdamW lr 1e-3."""
    from timm.data.mixup import Mixup
    from timm.loss import SoftTargetCrossEntropy

    gen = torch.Generator().manual_seed(2468)
    model = classifier(32, 8, 32, 2, 2)
    model.pos_embed.requires_grad_(True)
    randomize(model, gen)
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32, generator=gen)
    y = torch.tensor([0, 1, 1, 0])
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2)
    mix._params_per_batch = lambda: (0.7, False)
    xm, target = mix(x.clone(), y.clone())
    groups, _ = param_groups_lrd(model, 0.05, 0.65)
    opt = torch.optim.AdamW(groups, lr=1e-3, foreach=False)
    for g in opt.param_groups:
        g["lr"] = 1e-3 * g["lr_scale"]
    model.train()
    loss = SoftTargetCrossEntropy()(model(xm), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    save_file({**{f"init.{k}": v for k, v in init.items()},
               **{f"after.{k}": v.detach().contiguous() for k, v in model.state_dict().items()},
               "x": x, "labels": y.float(), "mixed": xm.contiguous(), "targets": target.contiguous(),
               "loss": loss.detach().reshape(1)},
              os.path.join(OUT, "finetune_mixup_step.safetensors"))


class FasNet(torch.nn.Module):
    """The official FAS classifier (`cross_domain_FAS/fas.py`, spec §6.3) around a timm ViT:
    tokens with token 0 = fc_norm(mean of patches), Linear(D, 512) -> ReLU -> Dropout(0.5), the
    embedder norm over dim 1 (the token axis: the official quirk) or per sample, and Linear(512, 2)
    whose weight is L2-normalised over the class axis in place before every use."""

    def __init__(self, vit, d, gen):
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.vit = vit
        vit.head = torch.nn.Identity()
        self.embedder = torch.nn.Module()
        self.embedder.bottleneck_layer_fc = torch.nn.Linear(d, 512)
        self.classifier = torch.nn.Module()
        self.classifier.classifier_layer = torch.nn.Linear(512, 2)
        with torch.no_grad():
            self.embedder.bottleneck_layer_fc.weight.copy_(torch.randn(512, d, generator=gen) * 0.005)
            self.embedder.bottleneck_layer_fc.bias.fill_(0.1)
            self.classifier.classifier_layer.weight.copy_(torch.randn(2, 512, generator=gen) * 0.01)
            self.classifier.classifier_layer.bias.fill_(0.0)
        self.drop = torch.nn.Dropout(0.5)

    def tokens(self, x):
        vit = self.backbone.vit
        x = vit.patch_embed(x)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + vit.pos_embed
        for blk in vit.blocks:
            x = blk(x)
        gp = vit.fc_norm(x[:, 1:, :].mean(dim=1))
        out = torch.zeros_like(x)
        out[:, 0, :] = gp
        out[:, 1:, :] = x[:, 1:, :]
        return out

    def forward(self, x, token_axis=True):
        t = self.tokens(x)
        if token_axis:
            f = self.drop(F.relu(self.embedder.bottleneck_layer_fc(t)))
            f = f / (torch.norm(f, p=2, dim=1, keepdim=True).clamp(min=1e-12) ** 0.5 * 2 ** 0.5)
        else:
            f = self.drop(F.relu(self.embedder.bottleneck_layer_fc(t[:, 0])))
            f = f / (torch.norm(f, p=2, dim=1, keepdim=True).clamp(min=1e-12) ** 0.5 * 2 ** 0.5)
            f = f[:, None, :]
        w = self.classifier.classifier_layer.weight
        w.data = w.data / torch.norm(w.data, 2, 0, True)
        return self.classifier.classifier_layer(f)[:, 0, :]


def fas_step():
    """The FAS classifier: logits of both embedder norms on one batch, then two steps of torch Adam
    (lr 1e-3, L2 weight decay 1e-4, one group) on the official CE of token 0 with the token-axis
    norm; dropout off (eval mode) so the values are deterministic."""
    gen = torch.Generator().manual_seed(97531)
    vit = classifier(32, 8, 32, 2, 2)
    randomize(vit, gen)
    net = FasNet(vit, 32, gen).eval()
    x = torch.randn(6, 3, 32, 32, generator=gen)
    y = torch.tensor([1, 0, 1, 0, 1, 0])  # official: real = 1
    init = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    with torch.no_grad():
        logits_token = net(x, True).clone()
        logits_sample = net(x, False).clone()
    net.load_state_dict(init)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    losses = []
    for _ in range(2):
        loss = F.cross_entropy(net(x, True), y)
        losses.append(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_file({**{f"init.{k}": v for k, v in init.items()},
               **{f"after.{k}": v.detach().contiguous() for k, v in net.state_dict().items()},
               "x": x, "labels": y.float(), "logits_token_axis": logits_token,
               "logits_per_sample": logits_sample, "losses": torch.stack(losses)},
              os.path.join(OUT, "fas_step.safetensors"))


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4321)
    os.makedirs(OUT, exist_ok=True)
    pc = dict(img=32, patch=8, chans=3, dim=32, depth=2, heads=2, proj_size=16, proj_hidden=48, rep_depth=2, rep_heads=16)
    online = FSFMOnline(dec_dim=24, dec_depth=1, dec_heads=4, **pc)
    target = FSFMTarget(**pc)
    randomize(online, gen)
    randomize(target, gen)
    # Scale the weights down so the random network is not saturated and gradients are moderate.
    with torch.no_grad():
        for name, p in list(online.named_parameters()) + list(target.named_parameters()):
            if p.ndim > 1 and "pos_embed" not in name:
                p.mul_(0.5)
    for p in target.parameters():
        p.requires_grad_(False)
    save_file({k: v.contiguous() for k, v in online.state_dict().items()}, os.path.join(OUT, "init_online.safetensors"))
    save_file({k: v.contiguous() for k, v in target.state_dict().items()}, os.path.join(OUT, "init_target.safetensors"))

    accum_iter, clip, wd = 2, 1.0, 0.05
    lrs = [1e-3, 2e-3]
    momenta = [0.99, 0.98, 0.97, 0.96]
    opt = torch.optim.AdamW(param_groups(online, wd), lr=lrs[0], betas=(0.9, 0.95), eps=1e-8, foreach=False)
    ref, norms = {}, []
    online.train()
    for it in range(4):
        n, L = 2, 16
        x = torch.randn(n, 3, 32, 32, generator=gen)
        mask = torch.zeros(n, L)
        region = torch.zeros(n, L)
        for i in range(n):
            mask[i, torch.randperm(L, generator=gen)[:12]] = 1.0
            if it != 3:  # the last batch has no covered region at all
                region[i, torch.nonzero(mask[i])[: 2 + i, 0]] = 1.0
        if it % accum_iter == 0:
            for g in opt.param_groups:
                g["lr"] = lrs[it // accum_iter]
        _, pred, p = online(x, mask)
        with torch.no_grad():
            z = target(x)
        rec_m, rec_fr, sim, total = losses(online, x, pred, mask, region, p, z)
        (total / accum_iter).backward()
        if (it + 1) % accum_iter == 0:
            for name, p_ in online.named_parameters():
                if p_.grad is not None:  # accumulated, before clipping
                    ref[f"grad{it // accum_iter}.{name}"] = p_.grad.detach().clone()
            norms.append(torch.nn.utils.clip_grad_norm_(online.parameters(), clip))
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            src = dict(online.named_parameters())
            m = momenta[it]
            for name, pt in target.named_parameters():
                pt.mul_(m).add_(src[name].detach(), alpha=1.0 - m)
        ref.update({f"step{it}.x": x, f"step{it}.mask": mask, f"step{it}.region": region,
                    f"step{it}.losses": torch.stack([rec_m, rec_fr, sim, total]).detach()})
    ref["grad_norms"] = torch.stack(norms).detach()
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(OUT, "steps.safetensors"))
    save_file({k: v.detach().contiguous() for k, v in online.state_dict().items()}, os.path.join(OUT, "after_online.safetensors"))
    save_file({k: v.detach().contiguous() for k, v in target.state_dict().items()}, os.path.join(OUT, "after_target.safetensors"))
    meta = {
        "torch": torch.__version__,
        "config": {"encoder": {"img_size": 32, "patch_size": 8, "in_chans": 3, "embed_dim": 32, "depth": 2, "num_heads": 2},
                   "decoder_embed_dim": 24, "decoder_depth": 1, "decoder_num_heads": 4, "rep_decoder_depth": 2,
                   "rep_decoder_num_heads": 16, "projection_size": 16, "projection_hidden_size": 48},
        "micro_steps": 4, "accum_iter": accum_iter, "clip_grad": clip, "weight_decay": wd, "betas": [0.9, 0.95],
        "lrs": lrs, "momenta": momenta,
    }
    with open(os.path.join(OUT, "steps.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("grad norms", [float(v) for v in norms])
    adapter_step(gen)
    finetune_step(gen)
    finetune_mixup_step()
    fas_step()
    print("wrote", OUT)


if __name__ == "__main__":
    main()
