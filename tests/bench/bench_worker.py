"""Benchmark of the worker start-up: apply-probe on a 2 x 2 km embeddings raster, cold and warm.

    python -m tests.bench.bench_worker [--repeats 5] [--dims 256] [--json]

Through the plugin's worker client, end to end (from the call to the result message, as
the dock and Processing see it): **cold** runs each job in a worker process of its own
(``reuse=False``: imports, torch included, paid every time); **warm** in the pool's
persistent worker (started once, before the timed runs). The two alternate, so a burst
of load on a shared machine hits both. The raster: 200 x 200 cells of 10 m, ``--dims``
float32 embedding bands; the probe: a linear one fitted by fit-probe on striped labels.
Printed: each time, the medians, cold / warm, the load average before and after, and
the issue-16 target (warm < 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIDE_CELLS, CELL_M = 200, 10.0
ORIGIN = (500000.0, 5000000.0)
TARGET_WARM_S = 2.0


def write_inputs(folder: Path, dims: int) -> tuple[Path, Path]:
    """The embeddings raster (classes in vertical stripes) and labelled polygons over part of it."""
    import numpy as np
    from osgeo import gdal, ogr, osr

    rng = np.random.default_rng(0)
    stripes = (np.arange(SIDE_CELLS) // 20 % 2)[None, :].repeat(SIDE_CELLS, 0)
    data = rng.normal(size=(2, dims))[stripes] + rng.normal(scale=0.5, size=(SIDE_CELLS, SIDE_CELLS, dims))
    raster = folder / "embeddings.tif"
    # GDAL, not rasterio: this process stands for QGIS's side of the worker protocol.
    gdal.UseExceptions()
    ds = gdal.GetDriverByName("GTiff").Create(
        str(raster), SIDE_CELLS, SIDE_CELLS, dims, gdal.GDT_Float32, ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]
    )
    ds.SetGeoTransform((ORIGIN[0], CELL_M, 0.0, ORIGIN[1], 0.0, -CELL_M))
    srs = osr.SpatialReference()
    srs.SetFromUserInput("EPSG:32633")
    ds.SetProjection(srs.ExportToWkt())
    for band in range(dims):
        ds.GetRasterBand(band + 1).SetNoDataValue(float("nan"))
        ds.GetRasterBand(band + 1).WriteArray(data[:, :, band].astype(np.float32))
    # An encoder's hash, under the tag embed writes (engine.probes.sources.HASH_TAG; without it fit-probe refuses).
    ds.SetMetadataItem("ENCODER_SHA256", "b" * 64)
    ds = None
    labels = folder / "labels.gpkg"
    ogr.UseExceptions()
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(labels))
    layer = source.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    x0, top = ORIGIN
    for col in range(0, SIDE_CELLS, 20):  # one polygon per stripe, over its upper half
        left, right = x0 + col * CELL_M, x0 + (col + 20) * CELL_M
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(
            ogr.CreateGeometryFromWkt(
                f"POLYGON (({left} {top - 1000}, {right} {top - 1000}, {right} {top - 20}, {left} {top - 20}, "
                f"{left} {top - 1000}))"
            )
        )
        feature.SetField("class", ("crop", "forest")[col // 20 % 2])
        layer.CreateFeature(feature)
    source = None
    return raster, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each kind (default: 5)")
    parser.add_argument("--dims", type=int, default=256, help="embedding bands (default: 256, OmniSat's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from omnisat_qgis.paths import engine_root
    from omnisat_qgis.worker_client import WorkerCallbacks, WorkerPool, WorkerRun, run_worker

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="omnisat-bench-worker-") as tmp:
        folder = Path(tmp)
        raster, labels = write_inputs(folder, args.dims)

        def job(operation: str, params: dict, outputs: list[str]) -> WorkerRun:
            return WorkerRun(
                python=Path(sys.executable),
                engine_root=engine_root(),
                operation=operation,
                params=params,
                output_paths=outputs,
            )

        probe = folder / "probe.safetensors"
        run_worker(
            job("fit-probe", {"labels": str(labels), "embeddings": str(raster), "output": str(probe)}, [str(probe)]),
            reuse=False,
        )
        pool = WorkerPool()
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        try:
            for k in range(args.repeats + 1):  # the first warm run starts the worker: not timed
                for kind in ("cold", "warm"):
                    if kind == "cold" and k == 0:
                        continue
                    out = folder / f"classes_{kind}_{k}.tif"
                    run = job(
                        "apply-probe", {"probe": str(probe), "embeddings": str(raster), "classes": str(out)}, [str(out)]
                    )
                    started = time.perf_counter()
                    if kind == "cold":
                        run_worker(run, reuse=False)
                    else:
                        pool.run(run, WorkerCallbacks(), 0.01)
                    if k:
                        times[kind].append(time.perf_counter() - started)
        finally:
            pool.shutdown()
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    result = {
        "operation": f"apply-probe, {SIDE_CELLS} x {SIDE_CELLS} cells of {CELL_M:g} m "
        f"({SIDE_CELLS * CELL_M / 1000:g} x {SIDE_CELLS * CELL_M / 1000:g} km), {args.dims} bands, linear probe",
        "seconds": times,
        "median_s": medians,
        "cold_over_warm": medians["cold"] / medians["warm"],
        "target_warm_s": TARGET_WARM_S,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["operation"])
    for kind in ("cold", "warm"):
        print(f"{kind:>5}: median {medians[kind]:.2f} s  ({', '.join(f'{t:.2f}' for t in times[kind])})")
    print(
        f"cold / warm: {result['cold_over_warm']:.1f}x; warm target < {TARGET_WARM_S:g} s: "
        f"{'met' if medians['warm'] < TARGET_WARM_S else 'NOT met'}"
    )
    print(
        "load average before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}".format(
            *load_before, *result["load_average_after"]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
