"""Area estimates with confidence intervals from a class map and a reference sample.

The good-practice stratified estimator of Olofsson et al. (2014, "Good practices for
estimating area and assessing accuracy of land change", Remote Sensing of Environment
148): the map's classes are the strata, ``W_i`` the share of the map's area in map
class i, and ``n_ij`` the number of reference samples drawn in stratum i whose
reference (true) class is j. With ``p_ij = W_i n_ij / n_i.`` the estimated share of
the area in cell (i, j) of the error matrix:

- area share of reference class j: ``p_.j = sum_i p_ij``, with
  ``SE(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.) (1 - n_ij/n_i.) / (n_i. - 1))``;
  area = total area x share, its 95 % interval = +- 1.96 SE;
- user's accuracy of map class i: ``U_i = n_ii / n_i.``, ``V(U_i) = U_i (1 - U_i) / (n_i. - 1)``;
- producer's accuracy of reference class j: ``P_j = p_jj / p_.j``, with the variance
  ``(1 / N_.j^2) [N_j.^2 (1 - P_j)^2 U_j (1 - U_j) / (n_j. - 1)
  + P_j^2 sum_{i != j} N_i.^2 (n_ij/n_i.) (1 - n_ij/n_i.) / (n_i. - 1)]``
  where ``N_i.`` is the mapped pixel count of class i and ``N_.j = sum_i N_i. n_ij / n_i.``;
- overall accuracy ``sum_j p_jj``, ``V = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)``.

Every stratum with mapped area needs at least two samples (the variances divide by
``n_i. - 1``). ``allocate_sample`` sizes a stratified sample: a floor per class (rare
classes still get enough samples for their user's accuracy), the rest proportional
to area.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import EngineError

Z95 = 1.959964  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class AreaEstimate:
    class_names: tuple[str, ...]
    mapped_pixels: np.ndarray  # (K,) N_i.
    pixel_area: float  # map units^2 (m^2 for a projected CRS in metres)
    counts: np.ndarray  # (K, K) samples: rows map class, columns reference class
    proportions: np.ndarray  # (K, K) p_ij
    area_share: np.ndarray  # (K,) p_.j
    area_share_se: np.ndarray
    area: np.ndarray  # (K,) estimated area of each reference class
    area_se: np.ndarray
    users_accuracy: np.ndarray  # (K,) per map class
    users_se: np.ndarray
    producers_accuracy: np.ndarray  # (K,) per reference class
    producers_se: np.ndarray
    overall_accuracy: float
    overall_se: float

    @property
    def mapped_area(self) -> np.ndarray:
        return self.mapped_pixels * self.pixel_area

    @property
    def total_area(self) -> float:
        return float(self.mapped_pixels.sum() * self.pixel_area)

    @property
    def area_ci95(self) -> np.ndarray:
        return Z95 * self.area_se

    def rows(self) -> list[dict[str, Any]]:
        """One record per class (what the CSV and the HTML table show)."""
        return [
            {
                "class": name,
                "mapped_pixels": int(self.mapped_pixels[k]),
                "mapped_area": float(self.mapped_area[k]),
                "samples_in_map_class": int(self.counts[k].sum()),
                "samples_in_reference_class": int(self.counts[:, k].sum()),
                "estimated_area": float(self.area[k]),
                "area_se": float(self.area_se[k]),
                "area_ci95_low": float(self.area[k] - self.area_ci95[k]),
                "area_ci95_high": float(self.area[k] + self.area_ci95[k]),
                "area_share": float(self.area_share[k]),
                "users_accuracy": float(self.users_accuracy[k]),
                "users_accuracy_se": float(self.users_se[k]),
                "producers_accuracy": float(self.producers_accuracy[k]),
                "producers_accuracy_se": float(self.producers_se[k]),
            }
            for k, name in enumerate(self.class_names)
        ]

    def caveats(self) -> list[str]:
        """Standard errors of 0 that come from a sample without variation, not from certainty."""
        notes = []
        for j, name in enumerate(self.class_names):
            if self.counts[:, j].sum() == 0 and self.mapped_pixels[j] > 0:
                notes.append(
                    f"No reference point is {name}: its estimated area is 0 and its interval (± 0) says "
                    "nothing about the uncertainty; if the class exists there, draw more samples where it "
                    "is mapped (sample-map)."
                )
        for i, name in enumerate(self.class_names):
            n = int(self.counts[i].sum())
            if n and self.users_accuracy[i] in (0.0, 1.0):
                notes.append(
                    f"Every one of the {n} points mapped {name} was {'right' if self.users_accuracy[i] else 'wrong'}:"
                    " its user's accuracy standard error of 0 means the sample showed no variation, not "
                    "certainty."
                )
        return notes

    def summary(self) -> dict[str, Any]:
        return {
            "overall_accuracy": self.overall_accuracy,
            "overall_accuracy_se": self.overall_se,
            "caveats": self.caveats(),
            "total_area": self.total_area,
            "pixel_area": self.pixel_area,
            "samples": int(self.counts.sum()),
            "classes": self.rows(),
            "error_matrix": self.counts.astype(int).tolist(),
        }


def stratified_estimate(
    counts: np.ndarray, mapped_pixels: Sequence[float], class_names: Sequence[str], pixel_area: float = 1.0
) -> AreaEstimate:
    """The stratified estimator (module docstring) from the sample error matrix ``counts``
    (rows: map class = stratum, columns: reference class) and the map's pixel count per class."""
    n = np.asarray(counts, np.float64)
    mapped = np.asarray(mapped_pixels, np.float64)
    k = len(class_names)
    if n.shape != (k, k) or mapped.shape != (k,):
        raise EngineError(
            f"The error matrix must be {k} x {k} and the mapped counts {k} long, got {n.shape} and {mapped.shape}."
        )
    if mapped.sum() <= 0:
        raise EngineError("The class map has no mapped pixel: nothing to estimate.")
    n_i = n.sum(1)
    thin = [f"{class_names[i]!r} ({int(n_i[i])})" for i in range(k) if mapped[i] > 0 and n_i[i] < 2]
    if thin:
        raise EngineError(
            f"Map class {', '.join(thin)} has fewer than 2 reference samples: the estimator needs at least two per "
            "mapped class (50 or more is good practice). Draw more samples in it (sample-map)."
        )
    weights = mapped / mapped.sum()
    denominator = np.maximum(n_i - 1.0, 1.0)
    share_in_stratum = np.divide(n, n_i[:, None], out=np.zeros_like(n), where=n_i[:, None] > 0)
    p = weights[:, None] * share_in_stratum
    area_share = p.sum(0)
    area_share_var = (weights[:, None] ** 2 * share_in_stratum * (1 - share_in_stratum) / denominator[:, None]).sum(0)
    users = np.diag(share_in_stratum).copy()
    users_var = users * (1 - users) / denominator
    diagonal = np.diag(p)
    producers = np.divide(diagonal, area_share, out=np.zeros(k), where=area_share > 0)
    estimated_reference = (mapped[:, None] * share_in_stratum).sum(0)  # N_.j
    producers_var = np.zeros(k)
    for j in range(k):
        if estimated_reference[j] <= 0:
            continue
        others = [i for i in range(k) if i != j]
        spread = (
            mapped[others] ** 2 * share_in_stratum[others, j] * (1 - share_in_stratum[others, j]) / denominator[others]
        ).sum()
        producers_var[j] = (
            mapped[j] ** 2 * (1 - producers[j]) ** 2 * users_var[j] + producers[j] ** 2 * spread
        ) / estimated_reference[j] ** 2
    overall = float(diagonal.sum())
    overall_var = float((weights**2 * users_var).sum())
    total = mapped.sum() * pixel_area
    return AreaEstimate(
        class_names=tuple(class_names),
        mapped_pixels=mapped,
        pixel_area=float(pixel_area),
        counts=n,
        proportions=p,
        area_share=area_share,
        area_share_se=np.sqrt(area_share_var),
        area=area_share * total,
        area_se=np.sqrt(area_share_var) * total,
        users_accuracy=users,
        users_se=np.sqrt(users_var),
        producers_accuracy=producers,
        producers_se=np.sqrt(producers_var),
        overall_accuracy=overall,
        overall_se=float(np.sqrt(overall_var)),
    )


def allocate_sample(mapped_pixels: Sequence[int], total: int, minimum: int = 50) -> np.ndarray:
    """Samples per map class: ``minimum`` each (at most the class's pixels), the rest of ``total``
    in proportion to the mapped area; never more than a class's pixel count."""
    mapped = np.asarray(mapped_pixels, np.int64)
    if total < 1 or minimum < 0:
        raise EngineError(f"The sample needs a positive total and a non-negative minimum, got {total} and {minimum}.")
    sizes = np.minimum(mapped, minimum)
    if sizes.sum() > total:
        raise EngineError(
            f"{total} samples cannot give {minimum} to each of the {int((mapped > 0).sum())} mapped "
            "classes: raise the total or lower the minimum per class."
        )
    left = total - int(sizes.sum())
    while left > 0:
        room = mapped - sizes
        if room.sum() == 0:
            break
        share = np.where(room > 0, mapped, 0).astype(np.float64)
        extra = np.minimum(np.floor(left * share / share.sum()).astype(np.int64), room)
        if extra.sum() == 0:  # the remainder, one each to the largest classes with room
            order = np.argsort(-share, kind="stable")[:left]
            extra = np.zeros_like(sizes)
            extra[order[room[order] > 0]] = 1
        sizes += extra
        left -= int(extra.sum())
    return sizes
