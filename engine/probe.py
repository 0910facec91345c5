"""Probes: classifiers fitted on frozen embeddings (or other features), their validation split and metrics.

A probe holds one classifier of the registry in engine.classifiers: the torch probes
defined here, k nearest neighbours, a random forest or gradient boosting. The torch
probe standardizes each channel (statistics of the training cells), then applies a
multinomial logistic regression (one linear layer) or a small MLP. Probes on
dense (per-sub-patch) features first normalise each vector with a LayerNorm: with the
standardization as the LayerNorm's affine part, the linear probe is then the dense
segmentation head (engine.models.heads.DenseSegmentationHead: LayerNorm + linear per sub-patch). Fitting
minimises class-weighted cross-entropy plus an L2 penalty on the weights. Every kind is
saved as safetensors arrays with JSON metadata (no pickle, whatever the kind) naming the classes, their colours, the
embedding level and the hash of the encoder that produced the embeddings: a probe
applied to other embeddings would give meaningless maps, so that is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from torch import nn

from engine.classifiers import CLASSIFIERS, STORED_KINDS, Classifier, fit_classifier, rebuild_classifier
from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.mapping.levels import level

PROBE_FORMAT = "omnisat-probe"
PROBE_VERSION = 2  # 2: any classifier kind (1: linear / mlp only; still read)


@dataclass(frozen=True)
class ProbeConfig:
    kind: str = "linear"  # a classifier of engine.classifiers.CLASSIFIERS: linear, mlp, knn, random_forest, ...
    optimizer: str = "lbfgs"  # "lbfgs" (full batch) or "adam"
    l2: float = 1e-3  # penalty on the squared weights, per sample
    class_weighting: bool = True  # weight classes by inverse frequency ("balanced")
    hidden: int = 128  # MLP width
    epochs: int = 200  # L-BFGS iterations or Adam epochs
    learning_rate: float = 1e-2  # Adam only
    seed: int = 0
    layer_norm: bool = False  # linear / mlp: LayerNorm each vector first (dense level: the segmentation head)
    neighbours: int = 10  # kNN
    trees: int = 200  # random forest trees / gradient boosting rounds

    def __post_init__(self):
        if self.kind not in CLASSIFIERS:
            raise EngineError(f"Probe kind must be one of {', '.join(CLASSIFIERS)}, got {self.kind!r}.")
        if self.trees < 1 or self.neighbours < 1:
            raise EngineError(f"trees and neighbours must be >= 1, got {self.trees} and {self.neighbours}.")
        if self.optimizer not in ("lbfgs", "adam"):
            raise EngineError(f"Probe optimizer must be 'lbfgs' or 'adam', got {self.optimizer!r}.")
        if self.l2 < 0:
            raise EngineError(f"The probe's L2 penalty must be >= 0, got {self.l2}.")
        if self.epochs < 1:
            raise EngineError(f"The probe needs at least one epoch/iteration, got {self.epochs}.")


class Probe(nn.Module):
    """[LayerNorm +] standardization + linear layer or MLP: (..., D) embeddings -> (..., K) logits."""

    def __init__(self, in_dim: int, n_classes: int, kind: str = "linear", hidden: int = 128, layer_norm: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        if kind == "linear":
            self.net = nn.Linear(in_dim, n_classes)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, n_classes))
        self.kind, self.in_dim, self.n_classes, self.hidden = kind, in_dim, n_classes, hidden
        self.layer_norm = layer_norm

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """The vectors the standardization sees: LayerNorm-ed (no affine) for a dense probe."""
        return F.layer_norm(x, (self.in_dim,)) if self.layer_norm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((self.normalized(x) - self.mean) / self.std)

    def weight_penalty(self) -> torch.Tensor:
        return sum(m.weight.square().sum() for m in self.modules() if isinstance(m, nn.Linear))

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray | torch.Tensor, batch: int = 65536) -> np.ndarray:
        x = torch.as_tensor(x, dtype=torch.float32)
        return torch.cat([self(x[i:i + batch]).softmax(-1) for i in range(0, len(x), batch)]).numpy()

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.predict_proba(x).argmax(-1)

    def architecture(self) -> dict[str, Any]:
        return {"kind": self.kind, "in_dim": self.in_dim, "n_classes": self.n_classes, "hidden": self.hidden,
                "layer_norm": self.layer_norm}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().contiguous().cpu().numpy() for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Probe":
        probe = cls(architecture["in_dim"], architecture["n_classes"], architecture["kind"], architecture["hidden"],
                    architecture.get("layer_norm", False))
        probe.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        return probe.eval()


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (n / (K * n_k)); classes absent from y get weight 0."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.as_tensor(weights, dtype=torch.float32)


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig = ProbeConfig()) -> Classifier:
    """Fit the classifier ``config.kind`` on features ``x`` (N, D) and class indices ``y`` (N,)."""
    return fit_classifier(x, y, n_classes, config)


def fit_neural_probe(x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig) -> Probe:
    """The torch probe (linear or MLP); inputs already checked by fit_classifier."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    torch.manual_seed(config.seed)
    probe = Probe(x.shape[1], n_classes, config.kind, config.hidden, config.layer_norm)
    normalized = probe.normalized(x)
    std = normalized.std(0, unbiased=False)
    probe.mean.copy_(normalized.mean(0))
    probe.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))  # constant channels stay as they are
    weights = class_weights(y_t.numpy(), n_classes) if config.class_weighting else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)

    def objective() -> torch.Tensor:
        return loss_fn(probe(x), y_t) + config.l2 * probe.weight_penalty()

    if config.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS(
            probe.parameters(), lr=1.0, max_iter=config.epochs, history_size=20,
            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9,
        )

        def closure():
            optimizer.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        optimizer.step(closure)
    else:
        optimizer = torch.optim.Adam(probe.parameters(), lr=config.learning_rate)
        generator = torch.Generator().manual_seed(config.seed)
        batch = 256
        for _ in range(config.epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), batch):
                idx = order[i:i + batch]
                optimizer.zero_grad()
                loss = loss_fn(probe(x[idx]), y_t[idx]) + config.l2 * probe.weight_penalty()
                loss.backward()
                optimizer.step()
    probe.eval()
    return probe


# ---------------------------------------------------------------- splits


def spatial_units(groups: np.ndarray, from_point: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  block_cells: int) -> np.ndarray:
    """The indivisible units of a split: a polygon's cells stay together; points are grouped
    into square blocks of ``block_cells`` x ``block_cells`` cells so that neighbouring points
    fall on the same side."""
    units = np.asarray(groups, np.int64).copy()
    from_point = np.asarray(from_point, bool)
    if from_point.any():
        if block_cells < 1:
            raise EngineError(f"block_cells must be >= 1, got {block_cells}.")
        block_row, block_col = rows[from_point] // block_cells, cols[from_point] // block_cells
        block_ids = block_row * (int(cols.max()) // block_cells + 1) + block_col
        units[from_point] = units.max(initial=0) + 1 + block_ids
    _, units = np.unique(units, return_inverse=True)
    return units


def blocked_folds(y: np.ndarray, units: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Assign every unit to one of ``n_folds`` folds, balancing each class across folds.

    Units are taken largest first (random order among equal sizes) and each goes to
    the fold that currently holds the smallest share of the unit's own class mix
    (a greedy stratified group k-fold). Returns the fold of each sample.
    """
    if n_folds < 2:
        raise EngineError(f"A split needs at least 2 folds, got {n_folds}.")
    y = np.asarray(y)
    n_classes = int(y.max()) + 1
    unit_ids, inverse = np.unique(units, return_inverse=True)
    if unit_ids.size < n_folds:
        raise EngineError(
            f"Only {unit_ids.size} separate polygons/blocks are labelled, fewer than the {n_folds} folds: "
            "add labels in more places, or use fewer folds / a smaller block size."
        )
    mix = np.zeros((unit_ids.size, n_classes))
    np.add.at(mix, (inverse, y), 1.0)
    totals = mix.sum(0)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(unit_ids.size), -mix.sum(1)))
    fold_counts = np.zeros((n_folds, n_classes))
    unit_fold = np.empty(unit_ids.size, np.int64)
    for u in order:
        # Cost: how over-filled each fold would become for the classes in this unit.
        share = (fold_counts + mix[u]) / np.maximum(totals, 1)
        cost = (share * (mix[u] > 0)).sum(1) + 1e-9 * fold_counts.sum(1)
        fold = int(np.argmin(cost))
        unit_fold[u] = fold
        fold_counts[fold] += mix[u]
    return unit_fold[inverse]


def validation_split(y: np.ndarray, units: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Boolean validation mask holding about ``val_fraction`` of each class, whole units only.

    Classes labelled in a single unit cannot be on both sides: they stay in training
    and are returned so the caller can say their accuracy is not measured.
    """
    if not 0.0 < val_fraction < 1.0:
        raise EngineError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    n_folds = max(2, int(round(1.0 / val_fraction)))
    folds = blocked_folds(y, units, n_folds, seed)
    # Hold out the fold that takes the smallest share of any class: large polygons make
    # folds uneven, and the one holding most of a class must stay for training.
    shares = np.zeros((n_folds, int(y.max()) + 1))
    np.add.at(shares, (folds, y), 1.0)
    shares /= np.maximum(shares.sum(0, keepdims=True), 1.0)
    val = folds == int(np.argmin(shares.max(1)))
    unmeasured = []
    for k in np.unique(y):
        in_class = y == k
        if val[in_class].all():  # the class would never be learned: its units go back to training
            val[np.isin(units, np.unique(units[in_class]))] = False
            unmeasured.append(int(k))
        elif not val[in_class].any():
            unmeasured.append(int(k))
    if not val.any() or val.all():
        raise EngineError("The labels are too few or too clustered for a validation split: add labels in more places.")
    return val, unmeasured


# ---------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def classification_metrics(cm: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Overall accuracy, macro-F1 (over classes that are true or predicted at least once), per-class figures."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    active = (support > 0) | (predicted > 0)
    total = cm.sum()
    return {
        "overall_accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(f1[active].mean()) if active.any() else float("nan"),
        "n_samples": int(total),
        "per_class": {
            name: {"f1": float(f1[k]), "precision": float(precision[k]), "recall": float(recall[k]),
                   "support": int(support[k])}
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


# ---------------------------------------------------------------- files


@dataclass
class ProbeMetadata:
    class_names: list[str]
    colors: list[str]  # "#rrggbb", one per class
    level: str  # embedding level (engine.mapping.levels)
    encoder_hash: str  # sha256 of the encoder's tensors
    encoder: dict[str, Any] = field(default_factory=dict)  # preset/checkpoint name, patch size, modalities...
    config: dict[str, Any] = field(default_factory=dict)  # ProbeConfig as a dict
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics at fit time
    labels: dict[str, Any] = field(default_factory=dict)  # label file, counts, dropped features
    features: dict[str, Any] = field(default_factory=lambda: {"set": "embeddings"})  # engine.features record
    validation: dict[str, Any] = field(default_factory=dict)  # rule, candidates' scores, learning curve


DEFAULT_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
)


def default_colors(n: int) -> list[str]:
    if n <= len(DEFAULT_COLORS):
        return list(DEFAULT_COLORS[:n])
    rng = np.random.default_rng(n)
    extra = ["#%02x%02x%02x" % tuple(rng.integers(30, 230, 3)) for _ in range(n - len(DEFAULT_COLORS))]
    return list(DEFAULT_COLORS) + extra


def class_colors(names: Sequence[str], given: Sequence[str] | None) -> list[str]:
    """One colour per class: ``given`` in class order, or as NAME=#rrggbb pairs (a class not named
    keeps the default palette's colour of its position); nothing given, the default palette."""
    defaults = default_colors(len(names))
    if not given:
        return defaults
    pairs = [g for g in given if "=" in g]
    if not pairs:
        return list(given)
    if len(pairs) != len(given):
        raise EngineError("Give the class colours either all in class order (#rrggbb) or all as NAME=#rrggbb.")
    by_name = dict(g.rsplit("=", 1) for g in pairs)
    return [by_name.get(name, colour) for name, colour in zip(names, defaults)]


def save_probe(path: str | Path, probe: Classifier, metadata: ProbeMetadata) -> Path:
    level(metadata.level)  # a known level, or a clear error
    if len(metadata.class_names) != probe.n_classes or len(metadata.colors) != probe.n_classes:
        raise ValueError("class names and colours must match the probe's classes")
    header = {
        "format": PROBE_FORMAT,
        "format_version": str(PROBE_VERSION),
        "architecture": json.dumps(probe.architecture()),
        "probe": json.dumps(asdict(metadata)),
    }
    tensors = {k: np.ascontiguousarray(v) for k, v in probe.arrays().items()}
    with atomic_output(path, "probe file") as temp:
        save_file(tensors, str(temp), metadata=header)
    return Path(path)


def is_probe_file(path: str | Path) -> bool:
    """Whether ``path`` is a probe file (its header says so), read without its tensors."""
    file = Path(path).expanduser()
    if not file.is_file():
        return False
    try:
        with safe_open(str(file), framework="numpy") as handle:
            return (handle.metadata() or {}).get("format") == PROBE_FORMAT
    except (SafetensorError, OSError, ValueError):
        return False


def load_probe(path: str | Path) -> tuple[Classifier, ProbeMetadata]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise EngineError(f"The probe file '{file}' does not exist: fit a probe first (fit-probe).")
    try:
        with safe_open(str(file), framework="numpy") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EngineError(f"'{file}' is not a readable probe file ({exc}): fit the probe again.") from None
    if header.get("format") != PROBE_FORMAT:
        raise EngineError(f"'{file}' is a safetensors file but not a probe (format {header.get('format')!r}).")
    if int(header.get("format_version", "0")) > PROBE_VERSION:
        raise EngineError(f"The probe '{file}' was written by a newer version of the engine: update the engine.")
    try:
        arch = json.loads(header["architecture"])
        metadata = ProbeMetadata(**json.loads(header["probe"]))
        kinds = [arch.get("kind"), *(m.get("kind") for m in arch.get("members", []))]
        for kind in kinds:
            if kind not in STORED_KINDS:
                raise EngineError(f"The probe '{file}' holds a {kind!r} classifier, which this engine does not "
                                  f"know (it knows {', '.join(STORED_KINDS)}): update the engine or fit the probe again.")
        probe = rebuild_classifier(arch, tensors)
    except EngineError as exc:
        raise EngineError(f"{exc} (probe file '{file}')") from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise EngineError(f"The probe file '{file}' is damaged ({type(exc).__name__}: {exc}): fit the probe again.") from None
    return probe, metadata


def check_encoder(probe: Classifier, metadata: ProbeMetadata, encoder_hash: str, level: str, embed_dim: int,
                  probe_path: str = "") -> None:
    """Refuse to apply a probe to embeddings of another encoder, level or width."""
    where = f"The probe '{probe_path}'" if probe_path else "The probe"
    if metadata.encoder_hash != encoder_hash:
        name = metadata.encoder.get("name") or "another encoder"
        raise EngineError(
            f"{where} was fitted on embeddings of {name} (hash {metadata.encoder_hash[:12]}), not of the "
            f"chosen model (hash {encoder_hash[:12]}): choose the model it was fitted with, or fit a new probe."
        )
    if metadata.level != level:
        raise EngineError(
            f"{where} was fitted on {metadata.level}-level embeddings, but these are {level}-level: compute the "
            f'embeddings with "outputs": {{"embeddings_level": "{metadata.level}"}} in the job, or fit a new probe.')
    if probe.in_dim != embed_dim:
        raise EngineError(f"{where} expects {probe.in_dim}-wide embeddings but the model gives {embed_dim}.")


@dataclass
class ValidatedFit:
    probe: Classifier  # fitted on every sample (the one to save)
    metrics: dict[str, Any]  # of a probe fitted on the training part, on the validation part
    validation: np.ndarray  # bool mask of the validation samples
    unmeasured: list[int]  # classes that could not be validated (all in one polygon/block)


def fit_validated(x: np.ndarray, y: np.ndarray, units: np.ndarray, class_names: tuple[str, ...] | list[str],
                  config: ProbeConfig, val_fraction: float = 0.2, seed: int = 0) -> ValidatedFit:
    """Measure accuracy on held-out units, then refit on all samples for the saved probe."""
    n_classes = len(class_names)
    validation, unmeasured = validation_split(y, units, val_fraction, seed)
    held_out = fit_probe(x[~validation], y[~validation], n_classes, config)
    cm = confusion_matrix(y[validation], held_out.predict(x[validation]), n_classes)
    metrics = classification_metrics(cm, class_names)
    return ValidatedFit(fit_probe(x, y, n_classes, config), metrics, validation, unmeasured)


class ProbeHead(nn.Module):
    """A probe seen as a head (the interface of engine.models.heads.LinearHead) by tiled inference:
    logits over the last axis of the embeddings of its ``level``: patch (B, Gh, Gw, D), sub-patch
    (B, Hs, Ws, 2D) or window (B, D). Classifiers outside torch (kNN, trees) run on the vectors as
    numpy and give log-probabilities as logits (softmax gives them back)."""

    class_axis = -1

    def __init__(self, probe: Classifier, level_name: str):
        from engine.models.heads import HeadConfig

        super().__init__()
        self.probe = probe
        self.level = level(level_name).name
        self.config = HeadConfig("patch", probe.in_dim, probe.n_classes)

    def read(self, features) -> torch.Tensor:
        return level(self.level).select(features)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        if isinstance(self.probe, nn.Module):
            return self.probe(patch)  # standardization and layers act on the last axis
        vectors = patch.reshape(-1, patch.shape[-1]).float().cpu().numpy()
        proba = torch.as_tensor(self.probe.predict_proba(vectors), dtype=torch.float32)
        return proba.clamp_min(1e-12).log().reshape(*patch.shape[:-1], self.probe.n_classes).to(patch.device)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)
