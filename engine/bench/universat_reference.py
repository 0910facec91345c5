"""UniverSat against the authors' reference code: equality at 1e-5 (fp32, CPU) and relative speed.

The reference is a checkout of the public repository in a folder outside the project (its
``hubconf.py`` and ``src/``); nothing of it is copied here. Both models get the same random
weights: the reference's own initialisation, then every parameter redrawn (its layer scales
start at 1e-6, which would hide any error in the attention and MLP branches), loaded into ours
through the explicit key mapping of engine.models.universat_weights.

    python -m engine.bench.universat_reference --reference /tmp/universat-ref [--size tiny|base|both]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rasterio
import torch

from engine.models.universat import UniverSat, universat_config
from engine.models.universat_sensors import SENSORS
from engine.models.universat_weights import load_release_state

SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "treesatai_sample"
TOLERANCE = 1e-5
_REFERENCE_BLOCKS = {
    "base": ["Bi_ACA_in", "SAx12", "Bilinear_out", "CA_Sub"],
    "tiny": ["Bi_ACA_in", "SAx6", "Bilinear_out", "CA_Sub"],
}


@functools.cache
def _reference_modules(folder: str):
    for path in (folder, str(Path(folder) / "src")):
        if path not in sys.path:
            sys.path.insert(0, path)
    importlib.import_module("hubconf")  # turns the reference's torch.compile off, as its hub path does
    net = importlib.import_module("models.networks.encoder.UniverSat")
    upe = importlib.import_module("models.networks.encoder.UniversalPatchEncoder")
    return net.UniverSat, upe.UniversalPatchEncoder


def reference_model(folder: str, size: str) -> torch.nn.Module:
    """The reference encoder at ``size`` (hubconf's Base recipe; Tiny from its yaml), no SSL projectors."""
    ref_cls, upe_cls = _reference_modules(folder)
    cfg = {
        "base": dict(dim=768, heads=12, div=8, expand=[2, 2, 2, 2]),
        "tiny": dict(dim=192, heads=8, div=4, expand=[1, 2, 2, 2]),
    }[size]
    upe = functools.partial(
        upe_cls,
        embed_dim=cfg["dim"] // cfg["div"],
        final_dim=cfg["dim"],
        n_queries=[1] * 4,
        expand_dim=cfg["expand"],
        order=["S1", "C", "T", "S"],
        num_heads=cfg["heads"],
        mlp_ratio=4.0,
        attn_drop_rate=0.0,
        gating=True,
    )
    return ref_cls(
        spatial_encoder=upe,
        block_type=_REFERENCE_BLOCKS[size],
        embed_dim=cfg["dim"],
        num_heads=cfg["heads"],
        mlp_ratio=4.0,
        qkv_bias=False,
        n_registers=4,
        pre_norm=False,
        gating=True,
        proba_drop_modalities=0.0,
        modalities_dict={},
    ).eval()


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Redraw every parameter so that each branch counts (layer scales of order 1, not 1e-6)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("rope.freqs"):
                continue  # keep the released frequency ladder
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
            elif "gamma" in name:  # every branch counts, activations stay of order 1-10 through 12 blocks
                p.copy_(0.2 + 0.3 * torch.rand(p.shape, generator=g))
            elif name.endswith(("scale", "norm.weight", "q_norm.weight", "k_norm.weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(
                    0.2 * torch.randn(p.shape, generator=g)
                    if "Encoding" not in name
                    else torch.randn(p.shape, generator=g)
                )


def twin_models(folder: str, size: str, seed: int = 0) -> tuple[torch.nn.Module, UniverSat]:
    torch.manual_seed(seed)
    ref = reference_model(folder, size)
    randomize(ref, seed)
    ours = UniverSat(universat_config(size)).eval()
    load_release_state(ours, {f"model.{k}": v for k, v in ref.state_dict().items()})
    return ref, ours


# ----- inputs -----
def _doy(product: bytes) -> float:
    stamp = product.decode().split("_")[2 if product.startswith(b"S2") else 4][:8]
    return float(dt.datetime.strptime(stamp, "%Y%m%d").timetuple().tm_yday)


@functools.cache
def treesat_sample() -> dict[str, np.ndarray]:

    name = "Abies_alba_1_1005_WEFL_NLF"
    with rasterio.open(SAMPLE / f"{name}.tif") as ds:
        aerial = ds.read()[:, :300, :300].astype(np.float32)  # 304 px; the 60 m of the Sentinel tile
    with h5py.File(SAMPLE / f"{name}.h5", "r") as f:
        s2, s2_days = f["sen-2-data"][:12], [_doy(p) for p in f["sen-2-products"][:12]]
        s1, s1_days = f["sen-1-asc-data"][:12], [_doy(p) for p in f["sen-1-asc-products"][:12]]
    s1 = np.concatenate([s1, s1[:, :1] / np.maximum(s1[:, 1:2], 1e-4)], axis=1)  # VV, VH, VV/VH

    def standard(a, axes):
        return (a - a.mean(axis=axes, keepdims=True)) / (a.std(axis=axes, keepdims=True) + 1e-6)

    return {
        "aerial": standard(aerial, (1, 2)),
        "s2": standard(s2, (0, 2, 3)),
        "s1": standard(s1, (0, 2, 3)),
        "s2_dates": np.array(s2_days, np.float32),
        "s1_dates": np.array(s1_days, np.float32),
    }


def treesat_inputs(names: tuple[str, ...], dates: int = 12) -> tuple[dict, dict]:
    data = treesat_sample()
    inputs = {n: torch.from_numpy(data[n][:dates] if n != "aerial" else data[n])[None] for n in names}
    days = {n: torch.from_numpy(data[f"{n}_dates"][:dates])[None] for n in names if n != "aerial"}
    return inputs, days


def _random(shapes: dict[str, tuple[int, ...]], batch: int = 1, seed: int = 1) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    inputs = {n: torch.randn(batch, *s, generator=g) for n, s in shapes.items()}
    days = {
        n: torch.sort(torch.randint(1, 366, (batch, s[0]), generator=g).float()).values
        for n, s in shapes.items()
        if SENSORS[n].spec.kind == "series"
    }
    return inputs, days


@dataclass
class Case:
    name: str
    make: Callable[[], tuple[dict, dict]]
    patch_m: float
    output_side: int | None = None  # None: the latent grid (patch level)


CASES = (
    Case("treesat aerial+s2+s1, 10 m patches, patch level", lambda: treesat_inputs(("aerial", "s2", "s1")), 10),
    Case(
        "treesat aerial+s2+s1, 10 m patches, 2 m output (30x30)", lambda: treesat_inputs(("aerial", "s2", "s1")), 10, 30
    ),
    Case("treesat aerial+s2+s1, 20 m patches, 10 m output", lambda: treesat_inputs(("aerial", "s2", "s1")), 20, 6),
    Case("treesat aerial only, 30 m patches, 1 m output (60x60)", lambda: treesat_inputs(("aerial",)), 30, 60),
    Case("treesat s2 only, 10 m patches, patch level", lambda: treesat_inputs(("s2",)), 10),
    Case("treesat s2+s1, 30 m patches, 10 m output", lambda: treesat_inputs(("s2", "s1")), 30, 6),
    Case("treesat s1 only, one date, 20 m patches, 5 m output", lambda: treesat_inputs(("s1",), 1), 20, 12),
    Case(
        "random s2 (5 dates) 24x24 px, batch 2, 40 m patches, 10 m output",
        lambda: _random({"s2": (5, 10, 24, 24)}, 2),
        40,
        24,
    ),
    Case(
        "random s2 24x24 + l7 8x8 (30 m, coarser patches), 10 m patches",
        lambda: _random({"s2": (4, 10, 24, 24), "l7": (3, 6, 8, 8)}),
        10,
        24,
    ),
    Case(
        "random enmap 202 bands 4x4 px at 30 m + dsm, 60 m patches, 30 m output",
        lambda: _random({"enmap": (202, 4, 4), "dsm": (1, 4, 4)}),
        60,
        4,
    ),
    Case(
        "random spot 40x40 px at 1 m + s2 4x4, 40 m patches, 5 m output (8x8)",
        lambda: _random({"spot": (3, 40, 40), "s2": (3, 10, 4, 4)}),
        40,
        8,
    ),
)


def reference_tokens(
    ref: torch.nn.Module, inputs: dict, dates: dict, patch_m: float, latent: int, output_side: int
) -> torch.Tensor:
    x, wavelengths, res, subs = {}, {}, {}, {}
    for name, tensor in inputs.items():
        sensor = SENSORS[name]
        key = sensor.reference
        x[key] = tensor
        if name in dates:
            x[f"{key}_dates"] = dates[name]
        wavelengths[key], res[key], subs[key] = list(sensor.channels), sensor.spec.gsd_m, sensor.sub_px
    tokens, _ = ref(x, wavelengths, res, patch_m / 10, latent * latent, output_side * output_side, subs)
    return tokens


def compare(folder: str, sizes: tuple[str, ...] = ("tiny", "base"), log=print) -> dict[str, Any]:
    torch.set_num_threads(2)
    rows, worst = [], 0.0
    for size in sizes:
        ref, ours = twin_models(folder, size)
        for case in CASES:
            inputs, dates = case.make()
            with torch.no_grad():
                latent = ours.latent_side(inputs, case.patch_m)
                side = case.output_side or latent
                a = reference_tokens(ref, inputs, dates, case.patch_m, latent, side)
                b = ours.tokens(inputs, dates, case.patch_m, side)
            diff = float((a - b).abs().max())
            scale = float(a.abs().max())
            ok = bool(torch.allclose(a, b, atol=TOLERANCE, rtol=TOLERANCE))
            worst = max(worst, diff)
            rows.append(
                {
                    "size": size,
                    "case": case.name,
                    "shape": list(b.shape),
                    "max_abs_diff": diff,
                    "max_abs_value": scale,
                    "allclose_1e-5": ok,
                }
            )
            log(f"{size:5s} {'OK ' if ok else 'BAD'} diff {diff:.2e} (|x| <= {scale:.3g}) {tuple(b.shape)} {case.name}")
    return {"cases": rows, "worst_abs_diff": worst, "all_equal": all(r["allclose_1e-5"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="folder of the reference repository checkout")
    parser.add_argument("--size", choices=("tiny", "base", "both"), default="both")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    sizes = ("tiny", "base") if args.size == "both" else (args.size,)
    result = compare(args.reference, sizes)
    print(f"worst |difference| {result['worst_abs_diff']:.3e}; all equal at 1e-5: {result['all_equal']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
