"""From what the user names (a file, a list of files, a folder, a multi-band stack) to
the layers of one modality: which file, which bands, which date, in date order.

Layouts:
- image modality: one file whose bands are the model's bands;
- series, list of files or folder: one file per date, each with the model's bands;
- series, one file with T x C bands: dates x channels, band ``t * C + c + 1`` holds
  channel ``c`` of date ``t`` (the order `gdalbuildvrt -separate` of single-date
  files gives); a file with exactly C bands is a single-date series.

Band order is checked against the modality spec: by the band descriptions when
they name bands (e.g. "B02", "2020-06-15 B8A"), by the count otherwise.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError
from engine.io.dates import check_dates, date_from_name, date_from_tags, explicit_dates, parse_date
from engine.io.raster import open_raster

if TYPE_CHECKING:  # io reads what a spec says; it needs no model code (models build on io)
    from engine.models.modalities import ModalitySpec

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc")


@dataclass(frozen=True)
class Layer:
    """One readable piece of a modality: bands (1-based, in the model's order) of one file."""

    path: Path
    bands: tuple[int, ...]
    date: dt.date | None
    label: str
    position: int = 0  # index in the order the user gave (files, then band groups)
    # Further files of the same date holding the modality's other bands (Sentinel-2's 10 m and
    # 20 m bands delivered apart): (path, bands) read after ``path``'s bands, in this order.
    more: tuple[tuple[Path, tuple[int, ...]], ...] = ()

    @property
    def n_bands(self) -> int:
        """Bands read for this date, over every file."""
        return len(self.bands) + sum(len(b) for _, b in self.more)

    def pieces(self) -> tuple[tuple[Path, tuple[int, ...]], ...]:
        return ((self.path, self.bands), *self.more)


@dataclass(frozen=True)
class Modality:
    """A modality ready for alignment: its spec, its layers (date order) and optional masks."""

    name: str
    spec: ModalitySpec
    layers: tuple[Layer, ...]
    masks: tuple[Layer, ...] | None = None
    mask_type: str = "binary"
    mask_threshold: float = 50.0
    # Positions in the spec of the bands the layers hold, when some are missing (job "bands"
    # with null); the reader puts ``fill_value`` (normalized, the model's) in the others.
    band_index: tuple[int, ...] | None = None
    fill_value: float = 0.0
    scale: str | None = None  # conversion applied while reading (engine.io.scales)
    # With band files apart (parts): the channels as read (files in order) taken in this order give
    # the spec's order (less missing bands); None when they already come in that order.
    band_order: tuple[int, ...] | None = None
    mask_classes: tuple[int, ...] | None = None  # scl masks: the classes that are not a clear view

    @property
    def missing_bands(self) -> list[str]:
        if self.band_index is None:
            return []
        return [b for i, b in enumerate(self.spec.bands) if i not in self.band_index]

    @property
    def dates(self) -> list[dt.date]:
        return [layer.date for layer in self.layers]  # type: ignore[misc]

    @property
    def files(self) -> list[Path]:
        return sorted({p for layer in self.layers for p, _ in layer.pieces()} | {m.path for m in self.masks or ()})


def list_files(files: str | list[str], what: str) -> list[Path]:
    """A folder becomes its raster files (sorted by name); a string one file; a list stays."""
    if isinstance(files, (list, tuple)):
        if not files:
            raise EngineError(f"{what} lists no files: give at least one raster.")
        return [Path(f).expanduser() for f in files]
    path = Path(files).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith("."))
        if not found:
            raise EngineError(f"The folder '{path}' given for {what} holds no raster ({', '.join(RASTER_SUFFIXES)}).")
        return found
    return [path]


def _canonical_band(name: str) -> str:
    """'B02' -> 'B2', 'b8a' -> 'B8A', 'VV' -> 'VV'; dates and separators dropped."""
    text = re.sub(r"(19|20)\d\d[-_.]?\d\d[-_.]?\d\d(T\d{6})?", " ", name.upper())
    tokens = [t for t in re.split(r"[^A-Z0-9]+", text) if t]
    if len(tokens) != 1:
        return ""
    return re.sub(r"^B0*(\d)", r"B\1", tokens[0])


def check_band_order(
    descriptions: list[str | None], spec: ModalitySpec, label: str, band_index: tuple[int, ...] | None = None
) -> None:
    """When every description names a band of the spec, they must come in the spec's order
    (only the spec's bands at ``band_index`` when some are missing)."""
    wanted = spec.bands if band_index is None else [spec.bands[i] for i in band_index]
    expected = [_canonical_band(b) for b in wanted]
    named = [_canonical_band(d or "") for d in descriptions]
    if not all(n and n in expected for n in named):
        return  # descriptions do not name bands (or name foreign ones): only the count is checked
    if named != expected:
        order = [named.index(e) + 1 if e in named else None for e in expected]
        hint = (
            f' Reorder them with "bands": {order} in the job.'
            if None not in order
            else f" Bands {', '.join(b for b, o in zip(wanted, order) if o is None)} are missing."
        )
        raise EngineError(
            f"The bands of '{label}' are {', '.join(d or '?' for d in descriptions)}, but the model's "
            f"{spec.name!r} modality expects {', '.join(spec.bands)} in this order.{hint}"
        )


def _count_error(label: str, count: int, spec: ModalitySpec, stack_hint: bool) -> EngineError:
    message = (
        f"'{label}' has {count} band(s), but the model's {spec.name!r} modality expects "
        f"{spec.n_bands} ({', '.join(spec.bands)})"
    )
    if stack_hint:
        message += f", or a multiple of {spec.n_bands} for one file holding every date (dates x bands)"
    return EngineError(
        message + ': choose the right file, or pick its bands with "bands" in the job '
        "(null for a band the file lacks, with an AnySat model)."
    )


def _band_index(bands: list[int | None] | None, spec: ModalitySpec) -> tuple[int, ...] | None:
    """Positions in the spec of the bands given; None when all are."""
    if bands is None:
        return None
    if len(bands) != spec.n_bands:
        raise EngineError(
            f'"bands" for {spec.name!r} lists {len(bands)} band(s); the model expects {spec.n_bands} '
            f"({', '.join(spec.bands)}): list one band number of the file per model band, in that order "
            "(null for a band the files lack)."
        )
    index = tuple(i for i, b in enumerate(bands) if b is not None)
    if not index:
        raise EngineError(f'"bands" for {spec.name!r} lists no band number: give at least one.')
    return None if len(index) == spec.n_bands else index


def _select_bands(bands: list[int | None] | None, count: int, spec: ModalitySpec, label: str) -> tuple[int, ...]:
    """The file's band numbers to read, in the model's order (missing bands left out)."""
    if bands is None:
        return tuple(range(1, spec.n_bands + 1))
    given = [b for b in bands if b is not None]
    bad = [b for b in given if not 1 <= b <= count]
    if bad:
        raise EngineError(f"'{label}' has bands 1 to {count}; \"bands\" asks for {bad}: fix the band numbers.")
    return tuple(given)


_NETCDF_UNITS = re.compile(
    r"^\s*(days|hours|minutes|seconds)\s+since\s+(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d)?))?"
)


def netcdf_band_dates(dataset) -> list[dt.date | None]:
    """Per band, the date a netCDF variable's time coordinate gives it (GDAL's NETCDF_DIM_<time> band
    metadata read with the coordinate's "<unit> since <date>" units); None where there is none."""
    tags = dataset.tags()
    dims = tags.get("NETCDF_DIM_EXTRA", "").strip("{}").split(",")
    for dim in (d.strip() for d in dims if d.strip()):
        units = _NETCDF_UNITS.match(tags.get(f"{dim}#units", ""))
        if not units:
            continue
        origin = dt.datetime.fromisoformat(f"{units[2]}T{units[3] or '00:00'}")
        dates = []
        for b in range(1, dataset.count + 1):
            value = dataset.tags(b).get(f"NETCDF_DIM_{dim}")
            try:
                dates.append((origin + dt.timedelta(**{units[1]: float(value)})).date())
            except (TypeError, ValueError):
                dates.append(None)
        return dates
    return [None] * dataset.count


def _band_dates(dataset) -> list[dt.date | None]:
    """Per band, the date its description or metadata (GDAL's, or a netCDF time coordinate) gives it."""
    netcdf = netcdf_band_dates(dataset) if dataset.driver == "netCDF" else [None] * dataset.count
    return [
        date_from_name(d or "") or date_from_tags(dataset.tags(b + 1)) or netcdf[b]
        for b, d in enumerate(dataset.descriptions)
    ]


def _file_date(path: Path, dataset) -> dt.date | None:
    return (
        date_from_name(path.name)
        or date_from_tags(dataset.tags())
        or date_from_tags(dataset.tags(1))
        or (date_from_name(dataset.descriptions[0]) if dataset.descriptions[0] else None)
    )


def resolve_modality(
    name: str,
    spec: ModalitySpec,
    files: str | list[str],
    dates: list[str] | None = None,
    bands: list[int] | None = None,
) -> Modality:
    """Layers of one modality in date order, with every check of the module docstring."""
    what = f"modality {name!r}"
    band_index = _band_index(bands, spec)
    paths = list_files(files, what)
    infos = []
    for path in paths:
        with open_raster(path, f"{name} input") as ds:
            infos.append(
                (
                    path,
                    ds.count,
                    list(ds.descriptions),
                    _file_date(path, ds) if spec.has_dates else None,
                    _band_dates(ds),
                )
            )

    if spec.kind == "image":
        if len(paths) != 1:
            raise EngineError(f"{what} is a single image: give one file, not {len(paths)}.")
        path, count, descriptions, _, _ = infos[0]
        if bands is None and count != spec.n_bands:
            raise _count_error(str(path), count, spec, stack_hint=False)
        selected = _select_bands(bands, count, spec, str(path))
        check_band_order([descriptions[b - 1] for b in selected], spec, str(path), band_index)
        return Modality(name, spec, (Layer(path, selected, None, path.name),), band_index=band_index)

    layers: list[Layer] = []
    if len(paths) == 1 and bands is None and infos[0][1] != spec.n_bands:
        # One file holding every date: dates x channels.
        path, count, descriptions, _, band_dates = infos[0]
        if count % spec.n_bands:
            raise _count_error(str(path), count, spec, stack_hint=True)
        c = spec.n_bands
        for t in range(count // c):
            group = tuple(range(t * c + 1, t * c + c + 1))
            check_band_order([descriptions[b - 1] for b in group], spec, f"{path} (date {t + 1})")
            layers.append(Layer(path, group, band_dates[t * c], f"{path.name} bands {group[0]}-{group[-1]}", t))
    else:
        for path, count, descriptions, file_date, _ in infos:
            if bands is None and count != spec.n_bands:
                raise _count_error(str(path), count, spec, stack_hint=len(paths) == 1)
            selected = _select_bands(bands, count, spec, str(path))
            check_band_order([descriptions[b - 1] for b in selected], spec, str(path), band_index)
            layers.append(Layer(path, selected, file_date, path.name, len(layers)))

    if spec.has_dates:
        if dates is not None:
            given = explicit_dates(dates, len(layers), what)
        else:
            given = check_dates([layer.date for layer in layers], [layer.label for layer in layers], what)
        layers = [Layer(layer.path, layer.bands, d, layer.label, layer.position) for layer, d in zip(layers, given)]
        layers.sort(key=lambda layer: layer.date)
    return Modality(name, spec, tuple(layers), band_index=band_index)


MASK_TYPES = ("binary", "valid", "scl", "probability")
# Sentinel-2 scene classification classes that are not a clear view of the ground:
# no data, saturated/defective, cloud shadow, cloud medium/high probability, thin cirrus.
SCL_INVALID = (0, 1, 3, 8, 9, 10)


def attach_masks(
    modality: Modality, files: str | list[str], mask_type: str = "binary", threshold: float = 50.0
) -> Modality:
    """Add one cloud/validity mask layer per date.

    Masks are matched to dates by the dates read from their own names/metadata when
    every one has one, by position otherwise (same order as the data as given).
    A single file with one band per date is also accepted.
    """
    what = f"the mask of modality {modality.name!r}"
    if mask_type not in MASK_TYPES:
        raise EngineError(f"Unknown mask type {mask_type!r} for {what}: use one of {', '.join(MASK_TYPES)}.")
    paths = list_files(files, what)
    masks: list[Layer] = []
    for path in paths:
        with open_raster(path, "mask") as ds:
            if len(paths) == 1 and ds.count == len(modality.layers) and ds.count > 1:
                masks += [
                    Layer(path, (b,), date_from_name(ds.descriptions[b - 1] or ""), f"{path.name} band {b}")
                    for b in range(1, ds.count + 1)
                ]
            else:
                if ds.count != 1:
                    raise EngineError(
                        f"The mask '{path}' has {ds.count} bands: give one single-band mask per date, "
                        f"or one file with one band per date ({len(modality.layers)})."
                    )
                masks.append(Layer(path, (1,), date_from_name(path.name) or date_from_tags(ds.tags()), path.name))
    if len(masks) != len(modality.layers):
        raise EngineError(
            f"{what} has {len(masks)} layer(s) for {len(modality.layers)} date(s): give one mask per date."
        )
    if all(m.date is not None for m in masks) and len({m.date for m in masks}) == len(masks):
        by_date = {m.date: m for m in masks}
        missing = [d.isoformat() for d in modality.dates if d not in by_date]
        if missing:
            raise EngineError(f"{what} has no layer for the date(s) {', '.join(missing)}: add them.")
        ordered = [by_date[d] for d in modality.dates]
    else:
        # Positional: mask i goes with the data layer the user gave in position i.
        ordered = [masks[layer.position] for layer in modality.layers]
    return replace(modality, masks=tuple(ordered), mask_type=mask_type, mask_threshold=threshold)


# ---------------------------------------------------------------- bands in several files, seasons

SCL_CLASSES = range(12)  # Sentinel-2 L2A scene classification values: 0 (no data) .. 11 (snow or ice)


@dataclass(frozen=True)
class Part:
    """Files holding some of a modality's bands (e.g. Sentinel-2's 20 m bands): ``bands`` names the
    model's bands the files hold, in the files' band order."""

    files: str | list[str]
    bands: tuple[str, ...]
    dates: list[str] | None = None


def _nesting(first, other, label: str, first_label: str) -> str | None:
    """Why ``other``'s pixel grid does not nest in ``first``'s (one pixel of the coarser = whole pixels
    of the finer), or None when it does."""
    if first.crs != other.crs:
        return f"'{label}' is in {other.crs} but '{first_label}' in {first.crs}"
    a, b = first.transform, other.transform
    if a.b or a.d or b.b or b.d:
        return f"'{label}' or '{first_label}' is rotated"
    fine = min(abs(a.a), abs(b.a))
    ratio = max(abs(a.a), abs(b.a)) / fine
    if abs(ratio - round(ratio)) > 1e-6:
        return f"its pixels ({abs(b.a):g}) are not a whole multiple of {abs(a.a):g}"
    for shift in ((b.c - a.c) / fine, (b.f - a.f) / fine):
        if abs(shift - round(shift)) > 1e-6:
            return f"its corner is {shift % 1 * fine:g} map units off the {fine:g} grid of '{first_label}'"
    return None


def resolve_parts(name: str, spec: ModalitySpec, parts: list[Part], log=None) -> Modality:
    """One modality from files that each hold some of its bands for every date (Sentinel-2 L2A's
    10 m and 20 m bands): the dates must agree between parts and the grids nest; coarser bands are
    resampled (bilinear) onto the modality's grid while reading, said to ``log``."""
    if not parts:
        raise EngineError(f'"parts" of modality {name!r} is empty: give one entry per group of band files.')
    names = [b for p in parts for b in p.bands]
    unknown = sorted({b for b in names if b not in spec.bands})
    if unknown:
        raise EngineError(
            f"The parts of modality {name!r} name band(s) {', '.join(unknown)}, which the model's "
            f"{name!r} does not have; its bands: {', '.join(spec.bands)}."
        )
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        raise EngineError(
            f"The parts of modality {name!r} give band(s) {', '.join(twice)} more than once: "
            "name each band in one part only."
        )
    resolved = []
    for k, part in enumerate(parts):
        idx = [spec.bands.index(b) for b in part.bands]
        sub = replace(
            spec, bands=tuple(part.bands), mean=tuple(spec.mean[i] for i in idx), std=tuple(spec.std[i] for i in idx)
        )
        resolved.append(resolve_modality(f"{name} part {k + 1} ({', '.join(part.bands)})", sub, part.files, part.dates))
    first = resolved[0]
    for k, other in enumerate(resolved[1:], 2):
        if other.dates != first.dates:
            only_first = sorted(set(first.dates) - set(other.dates))
            only_other = sorted(set(other.dates) - set(first.dates))
            raise EngineError(
                f"The band files of modality {name!r} disagree on dates: part 1 ({', '.join(parts[0].bands)}) has "
                f"{len(first.dates)}, part {k} ({', '.join(parts[k - 1].bands)}) {len(other.dates)}"
                + (f"; only in part 1: {', '.join(d.isoformat() for d in only_first[:5])}" if only_first else "")
                + (f"; only in part {k}: {', '.join(d.isoformat() for d in only_other[:5])}" if only_other else "")
                + ". Give every band of every date (the same acquisitions in each part)."
            )
        with (
            open_raster(first.layers[0].path, f"{name} input") as a,
            open_raster(other.layers[0].path, f"{name} input") as b,
        ):
            why = _nesting(a, b, str(other.layers[0].path), str(first.layers[0].path))
            if why is None and abs(b.transform.a) != abs(a.transform.a) and log is not None:
                log(
                    f"{name}: bands {', '.join(parts[k - 1].bands)} at {abs(b.transform.a):g} m, resampled "
                    f"(bilinear) to the {spec.gsd_m:g} m grid while reading (files unchanged)"
                )
        if why is not None:
            raise EngineError(
                f"The grid of modality {name!r}'s part {k} does not nest in part 1's: {why}. Give the "
                "bands of one tile on aligned grids (as delivered), or warp them onto one grid first."
            )
    layers = tuple(
        replace(
            first_layer,
            more=tuple((o.layers[t].path, o.layers[t].bands) for o in resolved[1:]),
            label=" + ".join(r.layers[t].label for r in resolved),
        )
        for t, first_layer in enumerate(first.layers)
    )
    positions = [spec.bands.index(b) for b in names]
    band_index = None if len(positions) == spec.n_bands else tuple(sorted(positions))
    order = tuple(int(i) for i in sorted(range(len(positions)), key=positions.__getitem__))
    return Modality(
        name, spec, layers, band_index=band_index, band_order=None if order == tuple(range(len(order))) else order
    )


def parse_season(season, what: str) -> tuple[dt.date, dt.date]:
    """``[start, end]`` (inclusive) as dates, with a clear error for anything else."""
    if not (isinstance(season, (list, tuple)) and len(season) == 2):
        raise EngineError(f'{what}: "season" must be [first day, last day], e.g. ["2018-04-01", "2018-10-31"].')
    start, end = parse_date(season[0]), parse_date(season[1])
    if end < start:
        raise EngineError(f'{what}: "season" ends ({end}) before it starts ({start}): give [first day, last day].')
    return start, end


def restrict_season(modality: Modality, season: tuple[dt.date, dt.date]) -> Modality:
    """The dates of ``modality`` within ``season`` (both ends included), masks along."""
    start, end = season
    keep = [t for t, d in enumerate(modality.dates) if start <= d <= end]
    if not keep:
        raise EngineError(
            f"Modality {modality.name!r} has no date in the season {start}..{end}: its dates run from "
            f"{modality.dates[0]} to {modality.dates[-1]}. Widen the season or give the files of that season."
        )
    masks = tuple(modality.masks[t] for t in keep) if modality.masks else modality.masks
    return replace(modality, layers=tuple(modality.layers[t] for t in keep), masks=masks)


def check_mask_cover(modality: Modality) -> None:
    """A mask must cover its data (an SCL of another tile or a cropped one would leave dates unmasked)."""
    if not modality.masks:
        return
    with open_raster(modality.layers[0].path, f"{modality.name} input") as data:
        bounds, crs, res = data.bounds, data.crs, abs(data.transform.a)
    for mask in dict.fromkeys(m.path for m in modality.masks):
        with open_raster(mask, f"{modality.name} mask") as ds:
            if ds.crs != crs:
                continue  # warped onto the grid; its footprint is checked there as nodata
            b = ds.bounds
            if (
                b.left > bounds.left + res / 2
                or b.right < bounds.right - res / 2
                or b.bottom > bounds.bottom + res / 2
                or b.top < bounds.top - res / 2
            ):
                raise EngineError(
                    f"The mask '{mask}' covers {b.left:g}, {b.bottom:g} to {b.right:g}, {b.top:g} but the data of "
                    f"modality {modality.name!r} ('{modality.layers[0].path}') {bounds.left:g}, {bounds.bottom:g} to "
                    f"{bounds.right:g}, {bounds.top:g}: give the mask of the same scene and extent."
                )
