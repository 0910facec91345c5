"""AnySat's multimodal JEPA pretraining: a student predicts an EMA teacher's patch tokens.

One step on a modality batch:
- the teacher (EMA copy of the student, no gradient) encodes the full input; its patch
  tokens, layer-normed, are the targets;
- on the patch grid, 4 target blocks (scale 0.2-0.8, aspect 0.75-1.5) and 1 context block
  (scale 0.85-1.0, square) minus the targets are drawn; block sizes are shared by the
  batch, positions are per sample (I-JEPA's multi-block masking);
- the student sees 50% of each series' dates, only the context patches, and per context
  patch a random subset of modalities (at least one kept; the others become a learned
  mask token, half of the droppable ones by default);
- a predictor (transformer on the student's context tokens plus mask tokens placed at
  the target patches) predicts the targets: smooth-L1 loss, plus the cross-modal patch
  contrastive loss on the student's per-modality patch tokens.
The teacher follows the student with a momentum rising linearly from 0.996 to 1.0.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.anysat import AnySat
from engine.models.attention import Block
from engine.models.losses import patch_contrastive_loss


@dataclass(frozen=True)
class JEPAConfig:
    total_steps: int  # optimizer steps of the whole run: the momentum reaches 1.0 at the end
    momentum: tuple[float, float] = (0.996, 1.0)
    predictor_depth: int = 4
    predictor_heads: int = 16
    n_targets: int = 4
    target_scale: tuple[float, float] = (0.2, 0.8)
    context_scale: tuple[float, float] = (0.85, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    modality_mask_ratio: float = 0.5  # share of the droppable (modality, patch) tokens masked
    date_drop: float = 0.5
    contrastive_weight: float = 1.0
    temperature: float = 0.1


class JEPAPredictor(nn.Module):
    """Context tokens + mask tokens at the target patches -> predicted target tokens."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.embed = nn.Linear(dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio, norm_eps=1e-5) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, context: Tensor, context_pos: Tensor, target_pos: Tensor) -> Tensor:
        """context (B, Nc, D) with positions (B, Nc, D); target_pos (B, Nt, D) -> (B, Nt, D)."""
        x = self.embed(context) + context_pos
        pred = self.mask_token + target_pos
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x, pred], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x[:, 1 + context.shape[1] :]))


def pretraining_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of the modules that pretrain ``model`` without being part of it: an AnySat's
    JEPA predictor; none for other models."""
    if not isinstance(model, AnySat):
        return {}
    cfg = JEPAConfig(total_steps=1)
    with torch.device("meta"):
        predictor = JEPAPredictor(model.embed_dim, cfg.predictor_depth, cfg.predictor_heads, model.config.mlp_ratio)
    return {"pretraining.jepa_predictor": sum(p.numel() for p in predictor.parameters())}


def _block_size(
    grid: int, scale: tuple[float, float], aspect: tuple[float, float], generator: torch.Generator
) -> tuple[int, int]:
    """A block of about scale x grid^2 patches with the given aspect, smaller than the grid."""
    u = torch.rand(1, generator=generator).item()
    area = grid * grid * (scale[0] + u * (scale[1] - scale[0]))
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h = min(max(1, round(math.sqrt(area * ratio))), max(1, grid - 1))
    w = min(max(1, round(math.sqrt(area / ratio))), max(1, grid - 1))
    return h, w


def _place(grid: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
    h, w = size
    top = int(torch.randint(0, grid - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, grid - w + 1, (1,), generator=generator))
    mask = torch.zeros(grid, grid, dtype=torch.bool)
    mask[top : top + h, left : left + w] = True
    return mask


def sample_block_masks(
    batch: int, grid: int, config: JEPAConfig, generator: torch.Generator
) -> tuple[Tensor, list[Tensor]]:
    """Context (B, Nc) and n_targets x (B, Nt) patch indices (row-major) on a grid x grid patch grid.

    Every sample keeps at least one context patch; lists are cut to the batch's shortest
    (the lowest indices stay), so the batch stays rectangular.
    """
    if grid < 2:
        raise ValueError("JEPA masking needs a patch grid of at least 2 x 2: use a smaller patch size")
    t_size = _block_size(grid, config.target_scale, config.aspect_ratio, generator)
    c_size = _block_size(grid, config.context_scale, (1.0, 1.0), generator)
    contexts, targets = [], [[] for _ in range(config.n_targets)]
    for _ in range(batch):
        covered = torch.zeros(grid, grid, dtype=torch.bool)
        for k in range(config.n_targets):
            block = _place(grid, t_size, generator)
            covered |= block
            targets[k].append(block.flatten().nonzero().squeeze(1))
        context = _place(grid, c_size, generator) & ~covered
        for _ in range(20):  # targets may cover the context block: redraw it elsewhere
            if context.any():
                break
            context = _place(grid, c_size, generator) & ~covered
        if not context.any():  # keep one patch outside the targets, or any patch at worst
            free = (~covered).flatten().nonzero().squeeze(1)
            context = torch.zeros(grid * grid, dtype=torch.bool)
            context[free[0] if free.numel() else 0] = True
        contexts.append(context.flatten().nonzero().squeeze(1))
    n_ctx = min(len(c) for c in contexts)
    ctx = torch.stack([c[:n_ctx] for c in contexts])
    tgt = [torch.stack([t[: min(len(x) for x in ts)] for t in ts]) for ts in targets]
    return ctx, tgt


def drop_dates(
    inputs: dict[str, Tensor],
    dates: dict[str, Tensor],
    date_mask: dict[str, Tensor] | None,
    model: AnySat,
    fraction: float,
    generator: torch.Generator,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor] | None]:
    """Keep a random (1 - fraction) of each series' dates, per sample (at least one)."""
    inputs, dates = dict(inputs), dict(dates)
    date_mask = dict(date_mask) if date_mask else None
    for name, x in inputs.items():
        if model.modalities[name].kind != "series":
            continue
        b, t = x.shape[:2]
        keep = max(1, int(t * (1 - fraction)))
        order = torch.rand(b, t, generator=generator).argsort(dim=1)[:, :keep].sort(dim=1).values.to(x.device)
        inputs[name] = torch.gather(x, 1, order[:, :, None, None, None].expand(-1, -1, *x.shape[2:]))
        if name in dates:
            dates[name] = torch.gather(dates[name], 1, order)
        if date_mask and name in date_mask:
            date_mask[name] = torch.gather(date_mask[name], 1, order)
            # a sample whose kept dates are all masked keeps its first one, as the model needs one
            date_mask[name][:, 0] |= ~date_mask[name].any(dim=1)
    return inputs, dates, date_mask


def keep_modalities(batch: int, n_patches: int, n_modalities: int, ratio: float, generator: torch.Generator) -> Tensor:
    """bool (B, M, Q): which (modality, patch) tokens the student sees.

    One random modality per patch is always kept; of the other (M - 1) Q tokens, a random
    (1 - ratio) share is kept too.
    """
    keep = torch.zeros(batch, n_modalities, n_patches, dtype=torch.bool)
    sure = torch.randint(n_modalities, (batch, n_patches), generator=generator)
    keep.scatter_(1, sure[:, None], True)
    extra = int(n_patches * (n_modalities - 1) * (1 - ratio))
    noise = torch.rand(batch, n_modalities * n_patches, generator=generator)
    noise[keep.flatten(1)] = 2.0  # the sure ones are not drawn again
    chosen = noise.argsort(dim=1)[:, :extra]
    keep.view(batch, -1).scatter_(1, chosen, True)
    return keep


class AnySatJEPA(nn.Module):
    """Student (trained), EMA teacher, predictor and modality mask token."""

    def __init__(self, student: AnySat, config: JEPAConfig):
        super().__init__()
        self.config = config
        self.student = student
        self.teacher = copy.deepcopy(student).requires_grad_(False)
        d = student.embed_dim
        self.predictor = JEPAPredictor(d, config.predictor_depth, config.predictor_heads, student.config.mlp_ratio)
        self.modality_mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.modality_mask_token, std=0.02)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def momentum(self) -> float:
        start, end = self.config.momentum
        progress = min(1.0, float(self.steps_done) / max(1, self.config.total_steps))
        return start + progress * (end - start)

    @torch.no_grad()
    def update_teacher(self) -> float:
        """teacher <- m teacher + (1 - m) student, after the optimizer step; returns m."""
        m = self.momentum()
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.mul_(m).add_(s.detach(), alpha=1.0 - m)
        self.steps_done += 1
        return m

    def forward(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Losses of one step: 'loss' (to backpropagate), 'jepa', 'contrastive'."""
        cfg, student = self.config, self.student
        generator = generator or torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))
        student.check_inputs(inputs, dates, date_mask)
        layout = student.layout(inputs, patch_size_m or student.config.patch_size_m)
        b, g = next(iter(inputs.values())).shape[0], layout.grid
        device = next(iter(inputs.values())).device

        with torch.no_grad():
            self.teacher.eval()
            enc_t = self.teacher.encode(inputs, dates, date_mask, layout)
            target_all = self.teacher.fuse(layout, enc_t.patch_tokens, enc_t.context_tokens)[:, 1:]
            target_all = F.layer_norm(target_all, target_all.shape[-1:])

        context, targets = sample_block_masks(b, g, cfg, generator)
        context, targets = context.to(device), [t.to(device) for t in targets]
        s_inputs, s_dates, s_mask = drop_dates(inputs, dates, date_mask, student, cfg.date_drop, generator)
        enc = student.encode(s_inputs, s_dates, s_mask, layout)
        names = list(enc.patch_tokens)
        gathered = {n: _take(enc.patch_tokens[n], context) for n in names}
        if len(names) > 1:
            keep = keep_modalities(b, context.shape[1], len(names), cfg.modality_mask_ratio, generator).to(device)
            for i, n in enumerate(names):
                gathered[n] = torch.where(
                    keep[:, i, :, None], gathered[n], self.modality_mask_token.to(gathered[n].dtype)
                )
        fused = student.fuse(layout, gathered, enc.context_tokens, patch_index=context)[:, 1:]

        pos = student.patch_positions(layout, device)
        preds = torch.cat([self.predictor(fused, pos[context], pos[t]) for t in targets], dim=1)
        goal = torch.cat([_take(target_all, t) for t in targets], dim=1)
        jepa = F.smooth_l1_loss(preds.float(), goal.float())
        losses = {"jepa": jepa}
        loss = jepa
        if len(names) > 1 and cfg.contrastive_weight:
            contrast = patch_contrastive_loss(torch.stack([enc.patch_tokens[n] for n in names]), cfg.temperature)
            losses["contrastive"] = contrast
            loss = loss + cfg.contrastive_weight * contrast
        losses["loss"] = loss
        return losses


def _take(tokens: Tensor, index: Tensor) -> Tensor:
    """tokens (B, P, D), index (B, Q) -> (B, Q, D)."""
    return torch.gather(tokens, 1, index[:, :, None].expand(-1, -1, tokens.shape[-1]))
