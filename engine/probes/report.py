"""A probe's fit report: one self-contained HTML file (the picture is embedded as base64).

QGIS's Processing results viewer opens HTML outputs, so the analyst sees the
accuracy, the confusion matrix, the per-class counts and the settings next to the map.
"""

from __future__ import annotations

import base64
import html
import io
import struct
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.atomic import atomic_output


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 image as PNG with zlib alone (no imaging library needed)."""
    rgb = np.ascontiguousarray(rgb, np.uint8)
    height, width, _ = rgb.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def _row_normalized(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm, np.float64)
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def _plain_confusion_png(cm: np.ndarray, cell: int = 32) -> bytes:
    """Heat map of the row-normalized matrix (white to dark blue), without text; the
    numbers are in the HTML table beside it."""
    share = _row_normalized(cm)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    colours = (white + share[..., None] * (blue - white)).astype(np.uint8)
    image = np.repeat(np.repeat(colours, cell, 0), cell, 1)
    image[::cell, :] = image[:, ::cell] = 160  # grid lines
    image = np.pad(image, ((0, 1), (0, 1), (0, 0)), constant_values=160)
    return png_bytes(image)


def _matplotlib_confusion_png(cm: np.ndarray, class_names: Sequence[str]) -> bytes:
    import matplotlib  # lazy: keeps matplotlib out of this module

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # lazy: keeps matplotlib out of this module

    n = len(class_names)
    size = max(3.5, 0.55 * n + 2.0)
    figure = Figure(figsize=(size + 1.0, size), dpi=100)
    axes = figure.add_subplot()
    share = _row_normalized(cm)
    image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for r in range(n):
        for c in range(n):
            axes.text(
                c,
                r,
                str(int(cm[r][c])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[r, c] > 0.5 else "black",
            )
    axes.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), labels=class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    figure.colorbar(image, ax=axes, label="share of the true class")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def confusion_png(cm: np.ndarray, class_names: Sequence[str], renderer: str = "auto") -> bytes:
    """PNG of the confusion matrix: matplotlib when installed ("auto"), else a plain heat map."""
    if renderer in ("auto", "matplotlib"):
        try:
            return _matplotlib_confusion_png(np.asarray(cm), class_names)
        except ImportError:
            if renderer == "matplotlib":
                raise
    return _plain_confusion_png(np.asarray(cm))


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None, cls: str = "") -> str:
    parts = [f'<table class="{cls}">' if cls else "<table>"]
    if header:
        parts.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return "" if value is None else str(value)


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; }
td:first-child { text-align: left; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #555; margin-right: 4px; }
.note { color: #555; font-size: 90%; }
"""


def fit_report_html(
    title: str,
    metrics: Mapping[str, Any] | None,
    class_names: Sequence[str],
    colors: Sequence[str],
    counts: Mapping[str, Mapping[str, int]],
    settings: Mapping[str, Any],
    notes: Sequence[str] = (),
    renderer: str = "auto",
    sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The report as an HTML string.

    ``metrics``: the output of engine.probes.metrics.classification_metrics on held-out cells (with
    ``folds``: the spread over folds, when cross-validated), None when validation was impossible;
    ``counts``: column name -> {class name -> count} (e.g. features, training cells, validation cells);
    ``sections``: further (title, HTML) blocks (candidates, learning curve, areas).
    """
    n = len(class_names)
    measured = metrics is not None
    metrics = metrics or {
        "overall_accuracy": None,
        "macro_f1": None,
        "n_samples": 0,
        "per_class": {},
        "confusion_matrix": np.zeros((n, n), np.int64).tolist(),
    }
    cm = np.asarray(metrics["confusion_matrix"], np.int64)
    picture = base64.b64encode(confusion_png(cm, class_names, renderer)).decode("ascii")
    swatches = [f'<span class="swatch" style="background:{html.escape(c)}"></span>' for c in colors]

    spread = metrics.get("folds")
    rows = [["Overall accuracy", metrics["overall_accuracy"]], ["Macro-F1", metrics["macro_f1"]]]
    if spread:
        rows = [
            ["Overall accuracy (pooled held-out cells)", metrics["overall_accuracy"]],
            ["Macro-F1 (pooled held-out cells)", metrics["macro_f1"]],
            ["Macro-F1 per fold, mean ± std", _spread(spread["macro_f1"])],
            ["Overall accuracy per fold, mean ± std", _spread(spread["overall_accuracy"])],
            ["Folds", len(spread["macro_f1"]["folds"])],
        ]
    summary = html_table(rows + [["Validation cells", metrics["n_samples"]]], ["Metric", "Value"], "metrics")
    if not measured:
        summary = (
            '<p><b>Not validated</b>: see the notes. No accuracy figure is given rather than a misleading one.</p>'
        )

    count_columns = list(counts)
    class_rows = []
    for k, name in enumerate(class_names):
        per = metrics["per_class"].get(name, {})
        row = [swatches[k] + html.escape(name)]
        row += [per.get("f1"), per.get("precision"), per.get("recall")]
        row += [counts[c].get(name, 0) for c in count_columns]
        class_rows.append(row)
    header = ["Class", "F1", "Precision", "Recall", *count_columns]
    per_class = ["<table class=\"classes\">", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in class_rows:
        per_class.append(
            "<tr><td>" + row[0] + "</td>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row[1:]) + "</tr>"
        )
    per_class.append("</table>")

    cm_rows = [[name, *cm[k].tolist()] for k, name in enumerate(class_names)]
    cm_table = html_table(cm_rows, ["true \\ predicted", *class_names], "confusion")
    settings_table = html_table([[k, v] for k, v in settings.items()], ["Setting", "Value"], "settings")
    note_items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Written {stamp}. Figures are measured on validation cells held out from fitting
(whole polygons / spatial blocks), never on the cells the probe was fitted on.</p>
<h2>Accuracy</h2>
{summary}
<h2>Per class</h2>
{"".join(per_class)}
<h2>Confusion matrix</h2>
<img alt="confusion matrix" src="data:image/png;base64,{picture}">
{cm_table}
{"".join(f"<h2>{html.escape(name)}</h2>{block}" for name, block in sections)}
{"<h2>Notes</h2><ul>" + note_items + "</ul>" if notes else ""}
<h2>Settings</h2>
{settings_table}
</body></html>
"""


def write_fit_report(path: str | Path, **kwargs: Any) -> Path:
    """Write ``fit_report_html(**kwargs)`` atomically to ``path``."""
    text = fit_report_html(**kwargs)
    with atomic_output(path, "report") as temp:
        Path(temp).write_text(text, encoding="utf-8")
    return Path(path)


def _area_scale(area_unit: str) -> tuple[float, str]:
    """Areas in square metres are shown in hectares."""
    return (1e-4, "ha") if area_unit == "m2" else (1.0, area_unit)


def area_table_html(estimate, area_unit: str) -> str:
    """The area table of an engine.analysis.area.AreaEstimate: mapped and estimated area with its 95 %
    interval, user's / producer's accuracy with standard errors, then the sample error matrix."""
    scale, unit = _area_scale(area_unit)
    rows = []
    for r in estimate.rows():
        rows.append(
            [
                r["class"],
                r["mapped_area"] * scale,
                r["estimated_area"] * scale,
                f"± {1.959964 * r['area_se'] * scale:.4g}",
                r["samples_in_map_class"],
                f"{r['users_accuracy']:.3f} ± {r['users_accuracy_se']:.3f}",
                f"{r['producers_accuracy']:.3f} ± {r['producers_accuracy_se']:.3f}",
            ]
        )
    table = html_table(
        rows,
        [
            "Class",
            f"Mapped area ({unit})",
            f"Estimated area ({unit})",
            "95% interval",
            "Samples in map class",
            "User's accuracy ± SE",
            "Producer's accuracy ± SE",
        ],
        "areas",
    )
    names = list(estimate.class_names)
    matrix = html_table(
        [[name, *estimate.counts[k].astype(int).tolist()] for k, name in enumerate(names)],
        ["map \\ reference", *names],
        "confusion",
    )
    caveats = "".join(f"<p class=\"note\">{html.escape(c)}</p>\n" for c in estimate.caveats())
    return (
        f"{table}\n<p>Overall accuracy {estimate.overall_accuracy:.3f} ± {estimate.overall_se:.3f} (SE), "
        f"{int(estimate.counts.sum())} reference samples.</p>\n{caveats}<h3>Sample error matrix</h3>\n{matrix}\n"
        '<p class="note">Stratified estimator of Olofsson et al. (2014, Remote Sensing of Environment 148): '
        "map classes are the strata, weighted by their mapped area; the interval is ± 1.96 standard errors. "
        "Valid for a stratified random sample of the map (sample-map draws one).</p>"
    )


def write_area_report(path: str | Path, estimate, area_unit: str, settings: Mapping[str, Any]) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Area estimates</title>
<style>{STYLE}</style></head>
<body>
<h1>Area estimates with 95% confidence intervals</h1>
<p class="note">Written {stamp}.</p>
{area_table_html(estimate, area_unit)}
<h2>Settings</h2>
{html_table([[k, v] for k, v in settings.items()], ["Setting", "Value"], "settings")}
</body></html>
"""
    with atomic_output(path, "html") as temp:
        Path(temp).write_text(text, encoding="utf-8")
    return Path(path)


def _spread(summary: Mapping[str, Any]) -> str:
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def candidates_html(table: Sequence[Mapping[str, Any]], nested: Mapping[str, Any] | None) -> str:
    """Every candidate's outer cross-validated score, the chosen ones (the saved vote's members) marked,
    and the nested estimate."""
    rows = [
        [("▶ " if r["chosen"] else "") + r["candidate"], _spread(r["macro_f1"]), _spread(r["overall_accuracy"])]
        for r in sorted(table, key=lambda r: -r["macro_f1"]["mean"])
    ]
    text = html_table(
        rows,
        ["Candidate (classifier on feature set)", "Macro-F1 (mean ± std over folds)", "Overall accuracy"],
        "candidates",
    )
    if nested:
        text += (
            f"<p>Nested estimate of the automatic choice (chosen on inner folds, scored on outer folds it never "
            f"saw): macro-F1 {_spread(nested['macro_f1'])}, overall accuracy "
            f"{_spread(nested['overall_accuracy'])}. The candidates' own scores above share the outer folds "
            "and would be optimistic for the best of them. ▶ marks the candidates the saved probe holds: "
            "with several, it averages their probabilities (a soft vote).</p>"
        )
    return text


def _curve_png(curve: Sequence[Mapping[str, Any]]) -> bytes | None:
    try:
        import matplotlib  # lazy: keeps matplotlib out of this module

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure  # lazy: keeps matplotlib out of this module
    except ImportError:
        return None
    figure = Figure(figsize=(5.0, 3.2), dpi=100)
    axes = figure.add_subplot()
    sizes = [p["cells_per_class"] for p in curve]
    for key, label in (("macro_f1", "macro-F1"), ("overall_accuracy", "overall accuracy")):
        mean = np.array([p[key]["mean"] for p in curve])
        std = np.array([p[key]["std"] for p in curve])
        axes.plot(sizes, mean, marker="o", label=label)
        axes.fill_between(sizes, mean - std, mean + std, alpha=0.2)
    axes.set_xscale("log")
    axes.set_xlabel("labelled cells per class (training)")
    axes.set_ylabel("held-out score")
    axes.set_ylim(0, 1)
    axes.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def learning_curve_html(curve: Sequence[Mapping[str, Any]]) -> str:
    picture = _curve_png(curve)
    image = (
        f'<img alt="learning curve" src="data:image/png;base64,{base64.b64encode(picture).decode("ascii")}">'
        if picture
        else ""
    )
    rows = [
        [
            ("all (" + str(p["cells_per_class"]) + ")") if p["all"] else p["cells_per_class"],
            _spread(p["macro_f1"]),
            _spread(p["overall_accuracy"]),
        ]
        for p in curve
    ]
    return (
        image
        + html_table(rows, ["Training cells per class", "Macro-F1", "Overall accuracy"], "curve")
        + '<p class="note">Same spatial folds as above; at each size that many training cells per class are '
        "drawn at random from each fold's training part (classes with fewer keep all theirs); the last point "
        "(all) is the cross-validation's own fits above. The sizes below it are 10, 50, 200 and 1000 cells "
        "per class where the classes have that many: few, to keep the curve cheap; it shows the trend, not "
        "where exactly it flattens. A curve still rising at the right says more labels will pay.</p>"
    )


def mapped_area_table(class_names: Sequence[str], pixels: np.ndarray, pixel_area: float, area_unit: str) -> str:
    scale, unit = _area_scale(area_unit)
    total = max(float(pixels.sum()), 1.0)
    rows = [
        [name, int(pixels[k]), float(pixels[k]) * pixel_area * scale, float(pixels[k]) / total]
        for k, name in enumerate(class_names)
    ]
    return (
        html_table(rows, ["Class", "Pixels", f"Mapped area ({unit})", "Share"], "areas")
        + '<p class="note">Pixel counts of the map: they carry its errors. For areas with 95% confidence '
        "intervals, draw a reference sample from the map (sample-map), label it, and run area-report "
        "(Olofsson et al. 2014 stratified estimator).</p>"
    )
