"""The accuracy assessment as one self-contained HTML page: design, labelling state, both
error matrices and the area table (engine.analysis.estimators.Assessment)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.io.atomic import atomic_output
from engine.probes.report import STYLE, html_table

UNDEFINED = "undefined"


def _pm(value: float, se: float, digits: int = 3) -> str:
    if not math.isfinite(value):
        return UNDEFINED
    spread = f"{se:.{digits}f}" if math.isfinite(se) else UNDEFINED
    return f"{value:.{digits}f} ± {spread}"


def _area_text(value: float) -> str:
    return f"{value:,.1f}" if math.isfinite(value) else UNDEFINED


def assessment_html(
    assessment,
    area_unit: str,
    design: Mapping[str, Any],
    response: Mapping[str, Any],
    per_stratum: list[list[Any]],
    settings: Mapping[str, Any],
) -> str:
    scale, unit = (1e-4, "ha") if area_unit == "m2" else (1.0, area_unit)
    names = list(assessment.class_names)
    rows = []
    for k, r in enumerate(assessment.rows()):
        area, se = assessment.area[k] * scale, assessment.area_se[k] * scale
        half = 1.959964 * se
        rows.append(
            [
                r["class"],
                _area_text(r["mapped_area"] * scale),
                _area_text(area),
                f"± {_area_text(half)}" if math.isfinite(half) else UNDEFINED,
                f"{_area_text(area - half)} – {_area_text(area + half)}" if math.isfinite(half) else UNDEFINED,
                f"{assessment.area_cv[k]:.3f}" if math.isfinite(assessment.area_cv[k]) else UNDEFINED,
                r["points_in_map_class"],
                _pm(assessment.users_accuracy[k], assessment.users_se[k]),
                _pm(assessment.producers_accuracy[k], assessment.producers_se[k]),
            ]
        )
    area_table = html_table(
        rows,
        [
            "Class",
            f"Mapped area ({unit})",
            f"Estimated area ({unit})",
            "95% interval",
            "95% interval (low – high)",
            "CV",
            "Labelled points in map class",
            "User's accuracy ± SE",
            "Producer's accuracy ± SE",
        ],
        "areas",
    )
    counts = html_table(
        [
            [name, *assessment.counts[k].astype(int).tolist(), int(assessment.counts[k].sum())]
            for k, name in enumerate(names)
        ]
        + [["total", *assessment.counts.sum(0).astype(int).tolist(), int(assessment.counts.sum())]],
        ["map \\ reference", *names, "total"],
        "confusion",
    )
    proportions = html_table(
        [
            [name, *[f"{v:.4f}" for v in assessment.proportions[k]], f"{assessment.proportions[k].sum():.4f}"]
            for k, name in enumerate(names)
        ]
        + [["total", *[f"{v:.4f}" for v in assessment.proportions.sum(0)], f"{assessment.proportions.sum():.4f}"]],
        ["map \\ reference", *names, "total"],
        "proportions",
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in assessment.notes)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Accuracy assessment and area estimates</title>
<style>{STYLE}</style></head>
<body>
<h1>Accuracy assessment and area estimates</h1>
<p class="note">Written {stamp}. Design-based estimates from a labelled probability sample of the map
(Olofsson et al. 2014; Stehman 2014); intervals are ± 1.96 standard errors.</p>
<h2>Sampling design</h2>
{html_table([[k, v] for k, v in design.items()], ["Design", "Value"], "design")}
<h2>Response design: labelling state</h2>
<p>{response['labelled']} of {response['total']} points labelled ({response['not sure']} not sure,
{response['no data']} no data, {response['not labelled']} not labelled yet); only labelled points enter the
estimates.</p>
{html_table(per_stratum, ["Stratum", "Points", "Labelled"], "strata")}
<h2>Areas and accuracy</h2>
{area_table}
<p>Overall accuracy {_pm(assessment.overall_accuracy, assessment.overall_se)} (SE).</p>
<h2>Error matrix: labelled points</h2>
{counts}
<h2>Error matrix: estimated proportions of the map's area</h2>
{proportions}
{"<h2>Notes</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Settings</h2>
{html_table([[k, v] for k, v in settings.items()], ["Setting", "Value"], "settings")}
</body></html>
"""


def write_assessment_report(path: str | Path, *args: Any, **kwargs: Any) -> Path:
    text = assessment_html(*args, **kwargs)
    with atomic_output(path, "html") as temp:
        Path(temp).write_text(text, encoding="utf-8")
    return Path(path)
