"""Spatial folds: the units labels are split by, blocks of points, buffered folds.

Why: a held-out cell next to a training cell (or in the same polygon, or a few metres
from a training point) shares its neighbourhood, so its score says little about the
map elsewhere. The rules, also written into every report (``SpatialFolds.rule``):

- Units: a polygon's cells stay together. Points are grouped into square blocks whose
  side is the labels' spatial autocorrelation range -- the distance up to which two
  labels share their class more often than two random labels do (the share of
  same-class pairs falls within ``TOLERANCE`` of chance) -- and at least twice the
  mean spacing of the points and ``MIN_BLOCK_CELLS``.
- Folds: units are dealt into ``FOLDS`` folds balancing each class (blocked_folds);
  every fold is the test set once. A class whose labels all lie in one unit cannot be
  tested: its unit always stays in training and the class is named as not validated.
  Fewer units than folds: fewer folds; a single unit: no validation (ValidationImpossible).
- Buffer: training cells within ``BUFFER_CELLS`` cells (8-neighbourhood) of a test cell
  are left out of that fold's training, so no training cell touches a test cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError

FOLDS = 5
BUFFER_CELLS = 1
MIN_BLOCK_CELLS = 2
TOLERANCE = 0.05  # excess same-class share (of 1 - chance) below which labels count as independent
MAX_PAIR_CELLS = 1500  # labelled cells used to measure the autocorrelation range


class ValidationImpossible(EngineError):
    """The labels cannot be split into spatially separate folds; fit without a score."""


# ---------------------------------------------------------------- units


def spatial_units(
    groups: np.ndarray, from_point: np.ndarray, rows: np.ndarray, cols: np.ndarray, block_cells: int
) -> np.ndarray:
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


# ---------------------------------------------------------------- metrics


# ---------------------------------------------------------------- blocks


def same_class_range(rows: np.ndarray, cols: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Autocorrelation range of the class labels, in cells (see the module docstring); the largest
    pair distance when labels never become independent within the extent."""
    rows, cols, y = np.asarray(rows, float), np.asarray(cols, float), np.asarray(y)
    if y.size > MAX_PAIR_CELLS:
        pick = np.random.default_rng(seed).choice(y.size, MAX_PAIR_CELLS, replace=False)
        rows, cols, y = rows[pick], cols[pick], y[pick]
    upper = np.triu_indices(y.size, 1)
    distance = np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])[upper]
    same = (y[:, None] == y[None, :])[upper]
    if distance.size == 0:
        return 0.0
    shares = np.bincount(y) / y.size
    chance = float((shares**2).sum())
    edges = np.unique(np.r_[0.0, np.geomspace(1.0, max(distance.max(), 1.0), 24)])
    which = np.digitize(distance, edges[1:], right=True)
    for b in range(len(edges) - 1):
        in_bin = which == b
        if in_bin.sum() < 10:  # too few pairs to judge
            continue
        if same[in_bin].mean() - chance <= TOLERANCE * (1.0 - chance):
            return float(edges[b])
    return float(distance.max())


@dataclass(frozen=True)
class BlockRule:
    block_cells: int
    range_cells: float
    spacing_cells: float

    def describe(self, cell_m: float) -> str:
        return (
            f"point blocks of {self.block_cells} x {self.block_cells} cells ({self.block_cells * cell_m:g} m): "
            f"the labels' autocorrelation range {self.range_cells * cell_m:.0f} m, at least twice the points' "
            f"mean spacing ({self.spacing_cells * cell_m:.0f} m) and {MIN_BLOCK_CELLS} cells"
        )


def point_block_rule(rows: np.ndarray, cols: np.ndarray, y: np.ndarray, seed: int = 0) -> BlockRule:
    extent = max(float(np.ptp(rows)) + 1.0, 1.0) * max(float(np.ptp(cols)) + 1.0, 1.0)
    spacing = math.sqrt(extent / max(len(y), 1))
    correlation = same_class_range(rows, cols, y, seed)
    side = max(int(math.ceil(correlation)), int(math.ceil(2.0 * spacing)), MIN_BLOCK_CELLS)
    return BlockRule(side, correlation, spacing)


@dataclass
class SpatialFolds:
    test_fold: np.ndarray  # (N,) fold of each sample; -1: always in training (its class cannot be tested)
    train: list[np.ndarray]  # per fold: bool mask of the training samples (outside the fold and its buffer)
    buffer_cells: int
    rule: str
    unvalidated: list[int]  # classes never in a test fold

    @property
    def n_folds(self) -> int:
        return len(self.train)

    def test(self, fold: int) -> np.ndarray:
        return self.test_fold == fold

    def buffered_out(self) -> list[int]:
        return [int((~self.train[f] & ~self.test(f)).sum()) for f in range(self.n_folds)]


def _buffer_masks(
    rows: np.ndarray, cols: np.ndarray, test_fold: np.ndarray, n_folds: int, buffer: int
) -> list[np.ndarray]:
    from scipy.ndimage import binary_dilation  # lazy: keeps SciPy out of this module

    r0, c0 = rows.min(), cols.min()
    shape = (int(rows.max() - r0) + 1, int(cols.max() - c0) + 1)
    local_r, local_c = rows - r0, cols - c0
    masks = []
    for fold in range(n_folds):
        test = test_fold == fold
        if buffer > 0:
            image = np.zeros(shape, bool)
            image[local_r[test], local_c[test]] = True
            near = binary_dilation(image, np.ones((2 * buffer + 1,) * 2, bool))[local_r, local_c]
        else:
            near = test
        masks.append(~test & ~near)
    return masks


def spatial_folds(
    y: np.ndarray,
    units: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    n_folds: int = FOLDS,
    buffer_cells: int = BUFFER_CELLS,
    seed: int = 0,
    rule: str = "",
) -> SpatialFolds:
    """Buffered blocked folds (module docstring). Raises ValidationImpossible when fewer than two
    units can be tested."""
    y, units = np.asarray(y), np.asarray(units)
    if buffer_cells < 0:
        raise EngineError(f"The validation buffer must be >= 0 cells, got {buffer_cells}.")
    # Classes held by a single unit cannot be both learned and tested: that unit always trains.
    unvalidated, fixed = [], np.zeros(y.size, bool)
    for k in np.unique(y):
        holders = np.unique(units[y == k])
        if holders.size < 2:
            unvalidated.append(int(k))
            fixed |= np.isin(units, holders)
    free_units = np.unique(units[~fixed])
    if free_units.size < 2:
        raise ValidationImpossible(
            f"The labels fall in {np.unique(units).size} polygon(s)/block(s) only"
            + (f" ({rule})" if rule else "")
            + ": no spatially separate validation is possible. The probe is fitted "
            "without a score; add labels in more places to measure its accuracy."
        )
    n = min(n_folds, int(free_units.size))
    test_fold = np.full(y.size, -1, np.int64)
    test_fold[~fixed] = blocked_folds(y[~fixed], units[~fixed], n, seed)
    present = [f for f in range(n) if (test_fold == f).any()]
    remap = np.full(n + 1, -1, np.int64)
    remap[present] = np.arange(len(present))
    test_fold = np.where(test_fold >= 0, remap[np.maximum(test_fold, 0)], -1)
    masks = _buffer_masks(np.asarray(rows), np.asarray(cols), test_fold, len(present), buffer_cells)
    text = (
        f"{len(present)} folds of whole polygons / point blocks"
        + (f"; {rule}" if rule else "")
        + f"; training cells within {buffer_cells} cell(s) of a test cell left out of that fold's training"
    )
    return SpatialFolds(test_fold, masks, buffer_cells, text, unvalidated)
