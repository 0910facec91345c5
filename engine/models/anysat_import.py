"""Explicit key mapping from the reference AnySat state dict to ours.

Accepted layouts of the reference file (a plain state dict, loaded with
``torch.load(weights_only=True)``):
- the released checkpoint: ``{"state_dict": {...}}`` with the encoder's own keys
  (``cls_token``, ``projector_<sensor>.*``, ``spatial_encoder.*``, ``blocks.<i>.*``);
- the same keys without the ``state_dict`` wrapper;
- the hub wrapper's state dict, which holds the encoder under ``model.*`` and the same
  spatial encoder a second time at the top level (``spatial_encoder.*``); the duplicate
  must be equal to ``model.spatial_encoder.*`` and is consumed as such.
Every reference key is either mapped to exactly one of our keys or reported unused;
every key of our model that no reference key fills is reported missing.
"""

from __future__ import annotations

import pickletools  # nosec B403  # reads pickle opcodes to refuse objects, never unpickles
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from pickle import UnpicklingError  # nosec B403  # the exception class only: what torch.load(weights_only=True) raises

import torch
from torch import Tensor

from engine.errors import EngineError
from engine.models.anysat import N_BUCKETS, AnySat, anysat_config
from engine.models.checkpoint import is_pytorch_pickle

# Reference sensor names -> ours.
REFERENCE_SENSORS = {
    "aerial": "aerial",
    "aerial-flair": "aerial_elevation",
    "spot": "spot",
    "naip": "naip",
    "s2": "s2",
    "s1-asc": "s1_asc",
    "s1": "s1_asc_ratio",
    "alos": "alos",
    "l7": "l7",
    "l8": "l8",
    "modis": "modis",
}
SIZES_BY_DIM = {256: "tiny", 512: "small", 768: "base"}
# The reference's iRPE tables hold 8 buckets: ids 0-2 are never indexed (distances are
# non-negative, offset by 3), 3-6 are distances 0, 1, 2-3, 4+, and 7 is the class token.
_RPE_USED = slice(8 - N_BUCKETS, 8)


def _rpe_table(t: Tensor) -> Tensor:
    return t[0, :, _RPE_USED]


@dataclass
class ImportReport:
    mapped: dict[str, str] = field(default_factory=dict)  # reference key -> our key
    unused: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # hub wrapper copies, checked equal


def load_reference(source: Path) -> object:
    """The reference file's contents, loaded with torch.load(weights_only=True): tensors and plain
    containers only; anything else is refused before it is built, with a message that names it."""
    if source.stat().st_size == 0:
        raise EngineError(
            f"'{source}' is empty (0 bytes), not a PyTorch state dict: the download or copy failed. Get the file again."
        )
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols is noise for a refused file
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(source, map_location="cpu", weights_only=True)
    except UnpicklingError as exc:
        named = re.search(r"GLOBAL (\S+)", str(exc))
        if not (named or is_pytorch_pickle(source)):
            raise not_a_state_dict(source) from None
        asked = named.group(1) if named else first_global(source.read_bytes())
        what = f" (it asks for {asked})" if asked else ""
        raise EngineError(
            f"'{source}' holds Python objects other than tensors{what}: it was refused and not loaded, since "
            "loading it could run code. Only plain state dicts of tensors are read: get the weights from "
            "their publisher."
        ) from None
    except Exception:  # torch raises KeyError, EOFError, RuntimeError, ... on files of another kind
        raise not_a_state_dict(source) from None


def first_global(data: bytes) -> str | None:
    """The first Python global a pickle names, read from its opcodes without running it."""
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                return str(arg).replace(" ", ".")
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a damaged pickle: nothing more to name
        return None
    return None


def not_a_state_dict(source: Path) -> EngineError:
    return EngineError(
        f"'{source}' is not a PyTorch state dict (a .pth file written by torch.save): it is of "
        "another format, or truncated. Check the file, or get it again."
    )


def unwrap(state: object, source: str) -> tuple[dict[str, Tensor], list[str]]:
    """The encoder's state dict from any accepted layout, plus the duplicate keys dropped."""
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise EngineError(f"{source} is not an AnySat state dict (a mapping of names to tensors).")
    if not any(k.startswith("model.") for k in state):
        return dict(state), []
    encoder = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    duplicates = []
    for key, value in state.items():
        if key.startswith("model."):
            continue
        twin = encoder.get(key)
        if twin is None or twin.shape != value.shape or not torch.equal(twin, value):
            raise EngineError(f"{source}: key {key!r} is outside 'model.' and is not a copy of 'model.{key}'.")
        duplicates.append(key)
    return encoder, duplicates


def reference_model(state: dict[str, Tensor], source: str) -> AnySat:
    """An AnySat of the reference's size with the eleven GeoPlex sensors."""
    if "cls_token" not in state:
        raise EngineError(f"{source} has no 'cls_token': not an AnySat encoder state dict.")
    dim = state["cls_token"].shape[-1]
    if dim not in SIZES_BY_DIM:
        raise EngineError(f"{source}: embedding size {dim} matches no AnySat size ({SIZES_BY_DIM}).")
    return AnySat(anysat_config(SIZES_BY_DIM[dim]))


def _rules(model: AnySat) -> list[tuple[re.Pattern, Callable[[re.Match], str | None], Callable[[Tensor], Tensor]]]:
    """(reference key pattern, our key for a match, tensor transform)."""
    same = lambda t: t  # noqa: E731

    def projector(m: re.Match) -> str | None:
        ours = REFERENCE_SENSORS.get(m["sensor"])
        if ours is None or ours not in model.projectors:
            return None
        rest = m["rest"]
        if rest == "pad_parameter":
            return f"projectors.{ours}.pad_value"
        if rest.startswith("patch_embed.weight"):
            return f"projectors.{ours}.conv.weight"
        if re.fullmatch(r"mlp\.\d+\.(weight|bias)", rest):
            return f"projectors.{ours}.{rest}"
        ltae = model.projectors[ours].ltae if hasattr(model.projectors[ours], "ltae") else None
        if ltae is None:
            return None
        if g := re.fullmatch(r"patch_embed\.inconv\.(\d+)\.(weight|bias)", rest):
            # Reference: [Linear, GroupNorm, ReLU, Dropout] per layer; ours: the same without Dropout at p = 0.
            layer, part = divmod(int(g[1]), 4)
            params = [i for i, mod in enumerate(ltae.in_mlp) if isinstance(mod, (torch.nn.Linear, torch.nn.GroupNorm))]
            if part > 1 or 2 * layer + part >= len(params):
                return None
            return f"projectors.{ours}.ltae.in_mlp.{params[2 * layer + part]}.{g[2]}"
        simple = {
            "patch_embed.attention_heads.Q": "ltae.query",
            "patch_embed.attention_heads.fc1_k.weight": "ltae.key.weight",
            "patch_embed.attention_heads.fc1_k.bias": "ltae.key.bias",
            "patch_embed.in_norm.weight": "ltae.in_norm.weight",
            "patch_embed.in_norm.bias": "ltae.in_norm.bias",
            "patch_embed.out_norm.weight": "ltae.out_norm.weight",
            "patch_embed.out_norm.bias": "ltae.out_norm.bias",
            "patch_embed.mlp.0.weight": "ltae.out_mlp.0.weight",
            "patch_embed.mlp.0.bias": "ltae.out_mlp.0.bias",
            "patch_embed.mlp.1.weight": "ltae.out_mlp.1.weight",
            "patch_embed.mlp.1.bias": "ltae.out_mlp.1.bias",
        }
        return f"projectors.{ours}.{simple[rest]}" if rest in simple else None

    depth = model.config.depth
    cross_parts = {
        "attn.q_learned": "cross_block.query",
        "attn.rpe_k.lookup_table_weight": "cross_block.block.attn.rel_pos.weight",
    }

    def block(m: re.Match) -> str | None:
        i, rest = int(m["i"]), m["rest"]
        if i < depth and re.fullmatch(r"(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", rest):
            return f"combiner.blocks.{i}.{rest}"
        if i == depth and rest in cross_parts:
            return cross_parts[rest]
        if i == depth and re.fullmatch(
            r"(norm1|norm2|attn\.wk|attn\.wv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", rest
        ):
            return f"cross_block.block.{rest}"
        return None

    return [
        (re.compile(r"cls_token"), lambda m: "combiner.cls_token", same),
        (re.compile(r"projector_(?P<sensor>[a-z0-9-]+)\.(?P<rest>.+)"), projector, same),
        (re.compile(r"spatial_encoder\.cls_token"), lambda m: "spatial_encoder.cls_token", same),
        (
            re.compile(r"spatial_encoder\.predictor_norm\.(?P<wb>weight|bias)"),
            lambda m: f"spatial_encoder.norm.{m['wb']}",
            same,
        ),
        (
            re.compile(r"spatial_encoder\.predictor_blocks\.(?P<i>\d+)\.attn\.rpe_k\.lookup_table_weight"),
            lambda m: f"spatial_encoder.blocks.{m['i']}.attn.rel_pos.weight",
            _rpe_table,
        ),
        (
            re.compile(
                r"spatial_encoder\.predictor_blocks\.(?P<i>\d+)\.(?P<rest>(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias))"
            ),
            lambda m: f"spatial_encoder.blocks.{m['i']}.{m['rest']}",
            same,
        ),
        (re.compile(r"blocks\.(?P<i>\d+)\.(?P<rest>attn\.rpe_k\.lookup_table_weight)"), block, _rpe_table),
        (re.compile(r"blocks\.(?P<i>\d+)\.(?P<rest>.+)"), block, same),
    ]


def map_state_dict(
    model: AnySat,
    reference: dict[str, Tensor],
    source: str = "the reference state dict",
    duplicates: list[str] | None = None,
) -> tuple[dict[str, Tensor], ImportReport]:
    """Our state dict from the reference one; shape mismatches are errors naming both keys."""
    ours = model.state_dict()
    report = ImportReport(duplicates=list(duplicates or []))
    mapped: dict[str, Tensor] = {}
    rules = _rules(model)
    for key, value in reference.items():
        target, transform = None, None
        for pattern, name, fn in rules:
            match = pattern.fullmatch(key)
            if match:
                target, transform = name(match), fn
                break
        if target is None or target not in ours:
            report.unused.append(key)
            continue
        if target in mapped:
            raise EngineError(f"{source}: two reference keys map to {target!r} (the second is {key!r}).")
        tensor = transform(value)
        if tuple(tensor.shape) != tuple(ours[target].shape):
            raise EngineError(
                f"{source}: {key!r} has shape {tuple(value.shape)}, which does not fit our {target!r} "
                f"{tuple(ours[target].shape)}: the file is not an AnySat {SIZES_BY_DIM.get(model.embed_dim)} checkpoint "
                "or its sensors differ."
            )
        mapped[target] = tensor.to(ours[target].dtype).clone()
        report.mapped[key] = target
    report.missing = [k for k in ours if k not in mapped]
    return mapped, report
