"""Probability samples of a class map, for its accuracy assessment and area estimates.

Designs (Olofsson et al. 2014, section 4; Stehman 2009):

- ``stratified``: the map classes are the strata; each class gets ``n_h`` points drawn
  uniformly among its pixels. Allocation of a total: ``proportional`` (n_h ~ N_h, the
  mapped pixels), ``equal`` (the same for every mapped class) or ``neyman`` (n_h ~ N_h S_h,
  optimal for the target's variable, S_h its standard deviation within class h);
- ``simple``: every classified pixel has the same chance;
- ``systematic``: a regular grid of points, ``step`` pixels apart, with a random offset;
  it is analysed like a simple random sample (engine.analysis.estimators).

An optional minimum distance thins a random draw: candidates are visited in random
order and one closer than the distance to a point already kept is skipped (as AcATaMa
does; the draw is then no longer exactly equal-probability, which the docs say).

Sample size from a target (Cochran 1977, eq. 5.25, as Olofsson et al. 2014 eq. 13):
the standard error wanted for the overall accuracy, or for the area share of one class,
from the expected user's accuracy U_h of every map class. For the overall accuracy the
0/1 variable "the map is right" has mean U_h and S_h = sqrt(U_h (1 - U_h)) in class h.
For the area of class j the variable "the point is j on the ground" has mean U_j in
class j, and in another class h the share of h's errors (1 - U_h) that falls on j in
proportion to j's mapped area among the other classes (an assumption; state yours if
you know better). Then, with V the wanted variance:
proportional ``n = sum W_h S_h^2 / V``; neyman ``n = (sum W_h S_h)^2 / V``; equal
``n = K sum W_h^2 S_h^2 / V``; simple random and systematic ``n = S^2 / V`` with
``S^2 = sum W_h (S_h^2 + (m_h - m)^2)`` the variable's variance over the whole map.
A floor per class then raises the classes below it.

Everything here works on pixel codes block by block (``Blocks``), without rasterio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.errors import EngineError

DESIGNS = ("stratified", "simple", "systematic")
ALLOCATIONS = ("proportional", "equal", "neyman")
DESIGN_VERSION = 1

# () -> iterator of (row offset, column offset, 2-D array of map class codes, -1 where not sampled)
Blocks = Callable[[], Iterable[tuple[int, int, np.ndarray]]]


@dataclass(frozen=True)
class Target:
    """A target standard error: of the overall accuracy (``target_class`` None) or of one
    class's area share (a proportion of the map, 0..1), from expected user's accuracies."""

    standard_error: float
    users_accuracy: tuple[float, ...]  # expected, one per map class code
    target_class: int | None = None


@dataclass
class SampleDesign:
    """What a sample layer records about how it was drawn: the estimator and the checks need it."""

    design: str
    class_names: list[str]
    stratum_pixels: list[int]  # mapped pixels per map class: the strata (stratified) or post-strata
    sample_sizes: list[int]  # points drawn per map class
    seed: int
    map_sha256: str
    map_name: str = ""
    allocation: str | None = None
    min_per_class: int = 0
    min_distance: float = 0.0  # map units
    grid_step: float = 0.0  # pixels (systematic)
    target: dict[str, Any] | None = None
    pixel_area: float = 1.0
    area_unit: str = "m2"
    strata: str = "map class"
    version: int = DESIGN_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, where: str) -> SampleDesign:
        try:
            data = json.loads(text)
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            design = cls(**known)
        except (ValueError, TypeError) as exc:
            raise EngineError(
                f"The sample design recorded in '{where}' cannot be read ({exc}): draw the sample "
                "again with sample-map."
            ) from None
        if design.design not in DESIGNS:
            raise EngineError(
                f"The sample design {design.design!r} recorded in '{where}' is unknown (known: {', '.join(DESIGNS)})."
            )
        return design


def stratum_moments(weights: np.ndarray, target: Target) -> tuple[np.ndarray, np.ndarray]:
    """(m_h, S_h): mean and standard deviation within each map class of the target's 0/1 variable."""
    users = np.asarray(target.users_accuracy, np.float64)
    if users.shape != weights.shape or np.any((users < 0) | (users > 1)):
        raise EngineError(
            f"Give one expected user's accuracy between 0 and 1 per map class ({weights.size}), "
            f"got {list(target.users_accuracy)}."
        )
    if target.target_class is None:
        mean = users
    else:
        j = target.target_class
        if not 0 <= j < weights.size:
            raise EngineError(f"The target class code {j} is not a class of the map (0..{weights.size - 1}).")
        others = weights.sum() - weights  # mapped share of every class but h
        share_of_j = np.divide(weights[j], others, out=np.zeros_like(weights), where=others > 0)
        mean = (1 - users) * share_of_j
        mean[j] = users[j]
    return mean, np.sqrt(mean * (1 - mean))


def size_for_target(mapped_pixels: Sequence[int], target: Target, design: str, allocation: str = "proportional") -> int:
    """Total sample size giving ``target.standard_error`` (module docstring's formulas)."""
    mapped = np.asarray(mapped_pixels, np.float64)
    if target.standard_error <= 0:
        raise EngineError(f"The target standard error must be positive, got {target.standard_error}.")
    weights = mapped / mapped.sum()
    mean, sd = stratum_moments(weights, target)
    variance = target.standard_error**2
    if design in ("simple", "systematic"):
        overall = float((weights * mean).sum())
        n = float((weights * (sd**2 + (mean - overall) ** 2)).sum()) / variance
    elif allocation == "proportional":
        n = float((weights * sd**2).sum()) / variance
    elif allocation == "neyman":
        n = float((weights * sd).sum()) ** 2 / variance
    elif allocation == "equal":
        n = int((mapped > 0).sum()) * float((weights**2 * sd**2).sum()) / variance
    else:
        raise EngineError(f"Unknown allocation {allocation!r}: use one of {', '.join(ALLOCATIONS)}.")
    return max(1, math.ceil(n - 1e-9))


def allocation_shares(mapped_pixels: Sequence[int], allocation: str, sd: np.ndarray | None = None) -> np.ndarray:
    mapped = np.asarray(mapped_pixels, np.float64)
    if allocation == "proportional":
        share = mapped.copy()
    elif allocation == "equal":
        share = (mapped > 0).astype(np.float64)
    elif allocation == "neyman":
        if sd is None:
            raise EngineError("Neyman allocation needs the expected user's accuracy of every class (a target).")
        share = mapped * sd
        if share.sum() == 0:  # every class expected perfect: nothing to optimise, fall back on the area
            share = mapped.copy()
    else:
        raise EngineError(f"Unknown allocation {allocation!r}: use one of {', '.join(ALLOCATIONS)}.")
    return share / share.sum()


def _round_to_total(raw: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total`` closest to ``raw`` (largest remainders)."""
    base = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - base), kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return base


def allocate(
    mapped_pixels: Sequence[int], total: int, allocation: str, minimum: int = 0, sd: np.ndarray | None = None
) -> np.ndarray:
    """Points per map class for a fixed ``total``: every mapped class gets at least ``minimum``
    (all its pixels if it has fewer), the rest follows the allocation's shares; never more
    points than a class has pixels."""
    mapped = np.asarray(mapped_pixels, np.int64)
    if total < 1 or minimum < 0:
        raise EngineError(f"The sample needs a positive total and a non-negative minimum, got {total} and {minimum}.")
    if total > mapped.sum():
        raise EngineError(
            f"{total} points cannot be drawn from a map of {int(mapped.sum())} classified pixels: ask for fewer points."
        )
    floor = np.minimum(mapped, minimum)
    if floor.sum() > total:
        raise EngineError(
            f"{total} points cannot give {minimum} to each of the {int((mapped > 0).sum())} mapped "
            "classes: raise the total or lower the minimum per class."
        )
    share = allocation_shares(mapped, allocation, sd)
    fixed = np.zeros(mapped.size, bool)  # classes held at their floor or at their pixel count
    sizes = floor.copy()
    for _ in range(mapped.size + 1):
        free = ~fixed & (mapped > 0)
        left = total - int(sizes[fixed].sum())
        raw = np.zeros(mapped.size)
        if share[free].sum() > 0:
            raw[free] = left * share[free] / share[free].sum()
        below, above = free & (raw < floor), free & (raw > mapped)
        if not below.any() and not above.any():
            sizes[free] = _round_to_total(raw[free], left)
            return sizes
        fixed |= below | above
        sizes[below], sizes[above] = floor[below], mapped[above]
    raise EngineError("The allocation did not settle: report this with the class counts.")  # pragma: no cover


def allocate_for_target(
    mapped_pixels: Sequence[int], n: int, allocation: str, minimum: int = 0, sd: np.ndarray | None = None
) -> np.ndarray:
    """Points per class for a target's size ``n``: the allocation's shares of ``n`` rounded up,
    then each class raised to the floor (never above its pixel count)."""
    mapped = np.asarray(mapped_pixels, np.int64)
    if n > mapped.sum():
        raise EngineError(
            f"The target needs {n} points but the map has only {int(mapped.sum())} classified "
            "pixels: ask for a larger standard error, or use a finer map."
        )
    share = allocation_shares(mapped, allocation, sd)
    sizes = np.ceil(n * share - 1e-9).astype(np.int64)
    return np.minimum(np.maximum(sizes, np.minimum(minimum, mapped)), mapped)


# ---------------------------------------------------------------- drawing


def _pick_by_rank(
    blocks: Blocks,
    ranks: list[np.ndarray],
    strata_of: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, map class) of the pixels whose rank within their stratum (in reading order) is listed."""
    seen = np.zeros(len(ranks), np.int64)
    rows, cols, codes_at = [], [], []
    for row_off, col_off, codes in blocks():
        flat_codes = codes.ravel()
        flat_strata = strata_of(flat_codes)
        for h in range(len(ranks)):
            flat = np.flatnonzero(flat_strata == h)
            if ranks[h].size and flat.size:
                chosen = flat[ranks[h][(ranks[h] >= seen[h]) & (ranks[h] < seen[h] + flat.size)] - seen[h]]
                r, c = np.divmod(chosen, codes.shape[1])
                rows.append(r + row_off)
                cols.append(c + col_off)
                codes_at.append(flat_codes[chosen].astype(np.int64))
            seen[h] += flat.size
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(codes_at)


def _thin(xy: np.ndarray, strata: np.ndarray, sizes: np.ndarray, distance: float) -> np.ndarray:
    """Indices kept, visiting candidates in their (random) order: a candidate is skipped when its
    stratum is full or it lies closer than ``distance`` to a point already kept."""
    kept: list[int] = []
    taken = np.zeros(sizes.size, np.int64)
    cells: dict[tuple[int, int], list[int]] = {}
    for i in range(len(xy)):
        h = strata[i]
        if taken[h] >= sizes[h]:
            continue
        if distance > 0:
            cx, cy = int(xy[i, 0] // distance), int(xy[i, 1] // distance)
            near = [k for dx in (-1, 0, 1) for dy in (-1, 0, 1) for k in cells.get((cx + dx, cy + dy), ())]
            if near and np.min(np.hypot(*(xy[near] - xy[i]).T)) < distance:
                continue
            cells.setdefault((cx, cy), []).append(i)
        kept.append(i)
        taken[h] += 1
    return np.asarray(kept, np.int64)


def draw_random(
    blocks: Blocks,
    stratum_pixels: Sequence[int],
    sizes: Sequence[int],
    seed: int,
    min_distance: float = 0.0,
    pixel_size: tuple[float, float] = (1.0, 1.0),
    stratum_names: Sequence[str] | None = None,
    strata_of: Callable[[np.ndarray], np.ndarray] = lambda codes: codes,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, map class) of ``sizes[h]`` pixels drawn uniformly in every stratum h (the strata
    are ``strata_of(map class codes)``; -1: not sampled), in a random order (the labelling order:
    it does not follow the strata). With ``min_distance`` (map units), more candidates are drawn
    and thinned; a clear error when the distance leaves too few."""
    counts = np.asarray(stratum_pixels, np.int64)
    sizes = np.asarray(sizes, np.int64)
    if np.any(sizes > counts):
        h = int(np.flatnonzero(sizes > counts)[0])
        raise EngineError(
            f"Stratum {stratum_names[h] if stratum_names else h} has {counts[h]} pixels, fewer than "
            f"the {sizes[h]} points asked."
        )
    rng = np.random.default_rng(seed)
    factor = 1 if min_distance <= 0 else 4
    while True:
        wanted = np.minimum(counts, sizes * factor + (10 if factor > 1 else 0))
        ranks = [
            np.sort(rng.choice(int(counts[h]), int(wanted[h]), replace=False)) if wanted[h] else np.zeros(0, np.int64)
            for h in range(counts.size)
        ]
        rows, cols, codes = _pick_by_rank(blocks, ranks, strata_of)
        order = rng.permutation(rows.size)
        rows, cols, codes = rows[order], cols[order], codes[order]
        strata = strata_of(codes)
        xy = np.stack([cols * abs(pixel_size[0]), rows * abs(pixel_size[1])], 1).astype(np.float64)
        kept = _thin(xy, strata, sizes, min_distance)
        got = np.bincount(strata[kept], minlength=counts.size)
        if np.all(got >= sizes):
            return rows[kept], cols[kept], codes[kept]
        if np.all(wanted[got < sizes] >= counts[got < sizes]):  # every candidate of the short strata seen
            short = [
                f"{stratum_names[h] if stratum_names else h} ({got[h]} of {sizes[h]})"
                for h in np.flatnonzero(got < sizes)
            ]
            raise EngineError(
                f"A minimum distance of {min_distance:g} between points leaves too few points in "
                f"{', '.join(short)}: lower the distance or the number of points."
            )
        factor *= 4


def draw_systematic(
    blocks: Blocks,
    shape: tuple[int, int],
    step: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, map class) of the grid points ``step`` pixels apart, offset at random within the
    first cell, that fall on a sampled pixel; in reading order."""
    if step < 1:
        raise EngineError(
            f"The systematic grid step ({step:g} pixels) is finer than a pixel: give a larger step or fewer points."
        )
    rng = np.random.default_rng(seed)
    offset = rng.uniform(0, step, 2)
    grid_rows = np.floor(offset[0] + step * np.arange(math.ceil((shape[0] - offset[0]) / step))).astype(np.int64)
    grid_cols = np.floor(offset[1] + step * np.arange(math.ceil((shape[1] - offset[1]) / step))).astype(np.int64)
    grid_rows, grid_cols = grid_rows[grid_rows < shape[0]], grid_cols[grid_cols < shape[1]]
    rows, cols, strata = [], [], []
    for row_off, col_off, codes in blocks():
        r = grid_rows[(grid_rows >= row_off) & (grid_rows < row_off + codes.shape[0])]
        c = grid_cols[(grid_cols >= col_off) & (grid_cols < col_off + codes.shape[1])]
        if not r.size or not c.size:
            continue
        rr, cc = np.meshgrid(r, c, indexing="ij")
        values = codes[rr - row_off, cc - col_off]
        keep = values >= 0
        rows.append(rr[keep])
        cols.append(cc[keep])
        strata.append(values[keep])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(strata).astype(np.int64)


def systematic_step(valid_pixels: int, n: int) -> float:
    """The grid step (pixels) that puts about ``n`` points on ``valid_pixels`` classified pixels."""
    if n > valid_pixels:
        raise EngineError(
            f"{n} points cannot be drawn from a map of {valid_pixels} classified pixels: ask for fewer "
            "points (or a larger target standard error)."
        )
    return math.sqrt(valid_pixels / n)


def check_expected_per_class(
    mapped_pixels: Sequence[int], expected: np.ndarray, names: Sequence[str], design: str, fix: str
) -> None:
    """Refuse, before drawing, a simple random or systematic design that leaves a mapped class with
    fewer than two expected points: its post-stratum variance would be undefined."""
    mapped = np.asarray(mapped_pixels)
    thin = [f"{names[h]} ({expected[h]:.1f})" for h in range(mapped.size) if mapped[h] > 0 and expected[h] < 2]
    if thin:
        raise EngineError(
            f"The {design} design expects fewer than 2 points in the mapped class(es) "
            f"{', '.join(thin)}: their accuracy and area could not be estimated. {fix}"
        )
