"""The papers' metrics, accumulated over batches (and reducible across DDP ranks).

- multi-label tiles (TreeSatAI-TS, PASTIS-HD, FLAIR as in OmniSat/AnySat):
  per-class true/false positives/negatives at a probability threshold, then
  weighted F1 (classes weighted by their support, TreeSatAI-TS) or macro F1
  (PASTIS-HD, FLAIR), micro F1;
- multi-class tiles: a confusion matrix, then overall accuracy and macro F1;
- segmentation: a confusion matrix over labelled pixels (ignore label left
  out), then mIoU (mean over classes present in the reference or predicted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))


@dataclass
class MetricAccumulator:
    kind: str  # multilabel | multiclass | segmentation
    num_classes: int
    ignore_index: int = -100
    threshold: float = 0.5
    counts: torch.Tensor = field(init=False)

    def __post_init__(self):
        shape = (3, self.num_classes) if self.kind == "multilabel" else (self.num_classes, self.num_classes)
        self.counts = torch.zeros(shape, dtype=torch.float64)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits, target = logits.detach().float().cpu(), target.detach().cpu()
        if self.kind == "multilabel":
            predicted = torch.sigmoid(logits) >= self.threshold
            truth = target >= 0.5
            self.counts[0] += (predicted & truth).sum(0).double()
            self.counts[1] += (predicted & ~truth).sum(0).double()
            self.counts[2] += (~predicted & truth).sum(0).double()
            return
        predicted = logits.argmax(1)
        if self.kind == "segmentation":
            keep = target != self.ignore_index
            predicted, target = predicted[keep], target[keep]
        index = target.long().flatten() * self.num_classes + predicted.flatten()
        self.counts += (
            torch.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes).double()
        )

    def all_reduce(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = self.counts.to(torch.float64)
            torch.distributed.all_reduce(counts)
            self.counts = counts

    def compute(self) -> dict[str, float]:
        if self.kind == "multilabel":
            tp, fp, fn = self.counts
            f1 = _f1(tp, fp, fn)
            support = tp + fn
            weighted = (f1 * support).sum() / support.sum() if support.sum() > 0 else torch.tensor(0.0)
            present = support > 0
            return {
                "weighted_f1": float(weighted) * 100,
                "macro_f1": float(f1[present].mean()) * 100 if present.any() else 0.0,
                "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())) * 100,
            }
        confusion = self.counts  # rows: reference, columns: predicted
        tp = confusion.diag()
        fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
        total = confusion.sum()
        seen = (tp + fp + fn) > 0
        iou = tp / (tp + fp + fn).clamp(min=1)
        f1 = _f1(tp, fp, fn)
        return {
            "overall_accuracy": float(tp.sum() / total) * 100 if total > 0 else 0.0,
            "macro_f1": float(f1[seen].mean()) * 100 if seen.any() else 0.0,
            "miou": float(iou[seen].mean()) * 100 if seen.any() else 0.0,
        }
