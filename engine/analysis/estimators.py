"""Design-based estimates of accuracy and area from a labelled probability sample of a class map.

One estimator for every design: the stratified estimator of Stehman (2014, "Estimating
area and map accuracy for stratified random sampling when the strata are different from
the map classes", IJRS 35(13)). Stratum h has ``N_h`` pixels and ``n_h`` labelled points;
for a 0/1 variable y of a point (e.g. "the point is class j on the ground"):

- a proportion of the map: ``p = sum_h N_h ybar_h / N``, with
  ``V(p) = sum_h N_h^2 (1 - n_h/N_h) s2_yh / n_h / N^2``;
- a ratio (user's, producer's accuracy): ``R = sum_h N_h ybar_h / sum_h N_h xbar_h``, with
  ``V(R) = sum_h N_h^2 (1 - n_h/N_h) (s2_yh + R^2 s2_xh - 2 R s_xyh) / n_h / X^2``,

where s2 and s_xy are the sample (co)variances within the stratum (divisor n_h - 1).
When the strata are the map classes this is, term for term, Olofsson et al. (2014)'s
estimator (their eqs. for p_.j, U_i, P_j, O), with the finite population correction
``1 - n_h/N_h`` that their formulas leave out (negligible for maps of many pixels; it can
be switched off).

Matched to the design:

- stratified random by map class: the strata of the draw;
- simple random and systematic: post-stratified by map class (``N_h`` the mapped pixels,
  ``n_h`` the points that fell in class h). The variance is the stratified one given the
  achieved ``n_h`` (Olofsson et al. 2013; the leading term of Cochran 1977's eq. 5A.42: the
  term in 1/n^2 for the randomness of the n_h is left out). A systematic sample is treated
  as a simple random one, the usual approximation, which tends to overstate its variance.

A stratum with fewer than two labelled points has no sample variance: every standard
error its points enter is undefined (NaN, reported as such, never as 0). A point estimate
with a zero denominator (the producer's accuracy of a class no point is, on the ground)
is undefined too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import EngineError

Z95 = 1.959964  # two-sided 95 % normal quantile
POST_STRATIFIED_NOTE = (
    "Post-stratified by map class: the variance is the stratified one given the number of points that fell in "
    "each map class (Olofsson et al. 2013), leaving out Cochran's 1/n^2 term for the randomness of those numbers."
)
SYSTEMATIC_NOTE = (
    "The systematic sample is analysed as a simple random one, the usual approximation; it tends to "
    "overstate the variance when the map has spatial pattern."
)


@dataclass(frozen=True)
class LabelledSample:
    """The labelled points: stratum, map class and reference class codes (one per point), the
    pixels of every stratum, and, when known, which map classes a stratum can hold (strata that
    are map classes hold one) so that a thin stratum leaves the estimates it cannot enter defined."""

    stratum: np.ndarray
    map_class: np.ndarray
    reference: np.ndarray
    stratum_pixels: np.ndarray
    stratum_classes: tuple[frozenset[int], ...] | None = None
    stratum_names: tuple[str, ...] | None = None

    def stratum_name(self, h: int) -> str:
        return self.stratum_names[h] if self.stratum_names else f"stratum {h + 1}"


@dataclass(frozen=True)
class Assessment:
    class_names: tuple[str, ...]
    design: str
    pixel_area: float
    mapped_pixels: np.ndarray  # (K,) per map class
    population_pixels: float  # pixels of the whole sampled map (sum of the strata)
    counts: np.ndarray  # (K, K) labelled points, rows map class, columns reference class
    proportions: np.ndarray  # (K, K) estimated area proportions p_ij
    area_share: np.ndarray  # (K,) per reference class
    area_share_se: np.ndarray
    users_accuracy: np.ndarray
    users_se: np.ndarray
    producers_accuracy: np.ndarray
    producers_se: np.ndarray
    overall_accuracy: float
    overall_se: float
    stratum_points: np.ndarray  # (H,) labelled points per stratum
    notes: tuple[str, ...] = field(default=())

    @property
    def total_area(self) -> float:
        return float(self.population_pixels * self.pixel_area)

    @property
    def area(self) -> np.ndarray:
        return self.area_share * self.total_area

    @property
    def area_se(self) -> np.ndarray:
        return self.area_share_se * self.total_area

    @property
    def area_ci95(self) -> np.ndarray:
        return Z95 * self.area_se

    @property
    def area_cv(self) -> np.ndarray:
        """Coefficient of variation of each class's area (SE / estimate); NaN for an estimate of 0."""
        return np.divide(self.area_se, self.area, out=np.full(self.area.size, np.nan), where=self.area > 0)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "class": name,
                "mapped_pixels": int(self.mapped_pixels[k]),
                "mapped_area": float(self.mapped_pixels[k] * self.pixel_area),
                "points_in_map_class": int(self.counts[k].sum()),
                "points_in_reference_class": int(self.counts[:, k].sum()),
                "estimated_area": float(self.area[k]),
                "area_se": _number(self.area_se[k]),
                "area_ci95_low": _number(self.area[k] - self.area_ci95[k]),
                "area_ci95_high": _number(self.area[k] + self.area_ci95[k]),
                "area_cv": _number(self.area_cv[k]),
                "area_share": float(self.area_share[k]),
                "users_accuracy": _number(self.users_accuracy[k]),
                "users_accuracy_se": _number(self.users_se[k]),
                "producers_accuracy": _number(self.producers_accuracy[k]),
                "producers_accuracy_se": _number(self.producers_se[k]),
            }
            for k, name in enumerate(self.class_names)
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "overall_accuracy": self.overall_accuracy,
            "overall_accuracy_se": _number(self.overall_se),
            "total_area": self.total_area,
            "pixel_area": self.pixel_area,
            "points": int(self.counts.sum()),
            "classes": self.rows(),
            "error_matrix": self.counts.astype(int).tolist(),
            "area_proportions": np.round(self.proportions, 6).tolist(),
            "notes": list(self.notes),
        }


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined figure is None."""
    return None if not np.isfinite(value) else float(value)


def _moments(values: np.ndarray, other: np.ndarray) -> tuple[float, float, float]:
    """Sample variance of values, of other, and their covariance (divisor n - 1)."""
    return (float(np.var(values, ddof=1)), float(np.var(other, ddof=1)), float(np.cov(values, other, ddof=1)[0, 1]))


class _Strata:
    def __init__(self, sample: LabelledSample, finite_population: bool):
        self.sizes = np.asarray(sample.stratum_pixels, np.float64)
        self.members = [np.flatnonzero(sample.stratum == h) for h in range(self.sizes.size)]
        self.n = np.array([m.size for m in self.members], np.float64)
        self.fpc = (1 - self.n / np.maximum(self.sizes, 1)) if finite_population else np.ones_like(self.n)
        self.classes = sample.stratum_classes

    def can_hold(self, h: int, map_class: int | None) -> bool:
        """Whether the variable (about map class ``map_class``; None: about the reference) can be
        non-zero in stratum h."""
        return map_class is None or self.classes is None or map_class in self.classes[h]

    def estimate(self, y: np.ndarray, x: np.ndarray | None = None, map_class: int | None = None) -> tuple[float, float]:
        """(estimate, standard error) of the proportion sum N_h ybar_h / N, or of the ratio to x."""
        y_total = x_total = 0.0
        for h, idx in enumerate(self.members):
            if idx.size:
                y_total += self.sizes[h] * y[idx].mean()
                x_total += self.sizes[h] * (x[idx].mean() if x is not None else 1.0)
        if x_total <= 0:
            return float("nan"), float("nan")
        ratio = y_total / x_total
        variance = 0.0
        for h, idx in enumerate(self.members):
            if not self.can_hold(h, map_class) or self.sizes[h] == 0:
                continue
            if idx.size < 2:
                return ratio, float("nan")
            ones = np.ones(idx.size)
            s_y, s_x, s_xy = _moments(y[idx], x[idx] if x is not None else ones)
            spread = s_y + ratio**2 * s_x - 2 * ratio * s_xy if x is not None else s_y
            variance += self.sizes[h] ** 2 * self.fpc[h] * spread / idx.size
        return ratio, float(np.sqrt(max(variance, 0.0)) / x_total)


def assess(
    sample: LabelledSample,
    class_names: Sequence[str],
    mapped_pixels: Sequence[int],
    design: str,
    pixel_area: float = 1.0,
    finite_population: bool = True,
) -> Assessment:
    """Error matrix, area proportions, areas, user's / producer's / overall accuracy with standard
    errors (module docstring). ``mapped_pixels``: the map's pixels per map class (the area table's
    total and mapped areas; for strata that are map classes, the same as the stratum sizes)."""
    k = len(class_names)
    strata = _Strata(sample, finite_population)
    for name, codes in (("map", sample.map_class), ("reference", sample.reference)):
        if codes.size and (codes.min() < 0 or codes.max() >= k):
            raise EngineError(
                f"A {name} class code lies outside 0..{k - 1}: the sample does not match the map's {k} classes."
            )
    empty = [h for h in range(strata.sizes.size) if strata.sizes[h] > 0 and strata.n[h] == 0]
    if empty:
        raise EngineError(
            f"No labelled point in {', '.join(sample.stratum_name(h) for h in empty)}: its part of "
            "the map cannot be estimated. Label points there (or draw more)."
        )
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (sample.map_class, sample.reference), 1)
    proportions = np.zeros((k, k))
    share, share_se = np.zeros(k), np.zeros(k)
    users, users_se = np.zeros(k), np.zeros(k)
    producers, producers_se = np.zeros(k), np.zeros(k)
    for i in range(k):
        for j in range(k):
            proportions[i, j] = strata.estimate(
                ((sample.map_class == i) & (sample.reference == j)).astype(float), map_class=i
            )[0]
    for j in range(k):
        on_j = (sample.reference == j).astype(float)
        right = ((sample.map_class == j) & (sample.reference == j)).astype(float)
        share[j], share_se[j] = strata.estimate(on_j)
        users[j], users_se[j] = strata.estimate(right, (sample.map_class == j).astype(float), map_class=j)
        producers[j], producers_se[j] = strata.estimate(right, on_j)
    overall, overall_se = strata.estimate((sample.map_class == sample.reference).astype(float))
    notes = []
    for h in np.flatnonzero((strata.n == 1) & (strata.sizes > 0)):
        notes.append(
            f"{sample.stratum_name(h)} has 1 labelled point: its variance is undefined, so every standard "
            "error it enters is undefined (shown as 'undefined', not 0). Label at least 2 points in it."
        )
    for j in range(k):
        if counts[:, j].sum() == 0 and mapped_pixels[j] > 0:
            notes.append(
                f"No labelled point is {class_names[j]} on the ground: its estimated area is 0 and its "
                "producer's accuracy undefined; a standard error of 0 then says nothing about its "
                "uncertainty."
            )
        if counts[j].sum() >= 2 and users[j] in (0.0, 1.0):
            notes.append(
                f"Every one of the {int(counts[j].sum())} points mapped {class_names[j]} was "
                f"{'right' if users[j] else 'wrong'}: its user's accuracy standard error of 0 means the "
                "sample showed no variation, not certainty."
            )
        if share[j] > 0 and share[j] - Z95 * share_se[j] < 0:
            notes.append(
                f"The 95% interval of {class_names[j]}'s area reaches below 0: the normal approximation "
                "behind '± 1.96 SE' does not hold with so few points on that class; read the interval "
                "as starting at 0, and label more points to narrow it."
            )
    if design in ("simple", "systematic"):
        notes.append(POST_STRATIFIED_NOTE)
    if design == "systematic":
        notes.append(SYSTEMATIC_NOTE)
    return Assessment(
        class_names=tuple(class_names),
        design=design,
        pixel_area=float(pixel_area),
        mapped_pixels=np.asarray(mapped_pixels, np.float64),
        population_pixels=float(strata.sizes.sum()),
        counts=counts,
        proportions=proportions,
        area_share=share,
        area_share_se=share_se,
        users_accuracy=users,
        users_se=users_se,
        producers_accuracy=producers,
        producers_se=producers_se,
        overall_accuracy=float(overall),
        overall_se=float(overall_se),
        stratum_points=strata.n.astype(np.int64),
        notes=tuple(notes),
    )


def by_map_class(
    map_class: np.ndarray, reference: np.ndarray, mapped_pixels: Sequence[int], class_names: Sequence[str]
) -> LabelledSample:
    """A sample whose strata (or post-strata) are the map classes."""
    mapped = np.asarray(mapped_pixels, np.int64)
    return LabelledSample(
        stratum=np.asarray(map_class),
        map_class=np.asarray(map_class),
        reference=np.asarray(reference),
        stratum_pixels=mapped,
        stratum_classes=tuple(frozenset({h}) for h in range(mapped.size)),
        stratum_names=tuple(f"map class {n!r}" for n in class_names),
    )
