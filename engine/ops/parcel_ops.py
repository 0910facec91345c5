"""``classify-parcels``: a class, its probability, the runner-up and the share of valid pixels per
parcel of a parcel register, written as a new styled GeoPackage layer (engine.parcels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.io.job import load_job
from engine.parcels.workflow import ParcelFeatureSettings, parcels_from_features, parcels_from_probabilities
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

FEATURES_HELP = (
    "per-pixel features averaged per parcel (mean and spread) for the features way: raw, stats, indices, "
    "monthly (per-month cloud-free medians), combined with '+'"
)


@dataclass
class ClassifyParcelsParams:
    parcels: str = field(
        metadata={
            "help": "parcels: a polygon layer (GeoPackage, shapefile...) in any CRS; never modified",
            "positional": True,
            "role": "input",
        }
    )
    output: str = field(
        metadata={
            "help": "GeoPackage to write (.gpkg): the parcels with class, probability, "
            "runner_up, runner_up_probability, valid_share, pixels, status",
            "positional": True,
        }
    )
    probabilities: str | None = field(
        default=None,
        metadata={
            "help": "pixels way: the probabilities raster of classify (one band per class); each parcel gets the mean "
            "probability of its pixels",
            "role": "input",
        },
    )
    classes: str | None = field(
        default=None,
        metadata={"help": "pixels way: the class map of the same run, for its class colours", "role": "input"},
    )
    job: str | dict | None = field(
        default=None, metadata={"help": "features way: the job of the input rasters (as classify's); with class_field"}
    )
    class_field: str | None = field(
        default=None,
        metadata={
            "help": "features way: field of the parcels holding the known class of some parcels (the others empty); "
            "a classifier is fitted on them and applied to every parcel"
        },
    )
    feature_set: str = field(default="monthly+stats", metadata={"help": FEATURES_HELP})
    classifier: str = field(
        default="random_forest",
        metadata={"help": "features way: linear, mlp, knn, random_forest, extra_trees or gradient_boosting"},
    )
    way: str = field(
        default="features",
        metadata={
            "help": "with a job: features (a classifier on per-parcel statistics), pixels (a classifier on the "
            "pixels, probabilities averaged per parcel) or auto (the better of the two on held-out whole parcels; "
            "both scores reported)"
        },
    )
    layer: str | None = field(default=None, metadata={"help": "layer of the parcels file (default: the first)"})
    output_layer: str = field(default="parcels_classified", metadata={"help": "name of the layer written"})
    seed: int = field(default=0, metadata={"help": "random seed (folds, forest)"})


@operation(
    "classify-parcels",
    ClassifyParcelsParams,
    outputs=("output",),
    summary="Classify each parcel of a parcel layer: class, probability, runner-up, share of valid pixels.",
)
def classify_parcels_operation(params: ClassifyParcelsParams, reporter: Reporter) -> dict[str, Any]:
    """Two ways: ``probabilities`` (a map's per-pixel probabilities averaged over each parcel's pixels)
    or ``job`` + ``class_field`` (per-parcel statistics of the inputs' pixel features, a classifier fitted
    on the parcels with a known class and scored on held-out whole parcels). The parcels layer is read
    only; the result is a new GeoPackage layer with a categorised style in the class colours."""
    if not str(params.output).lower().endswith(".gpkg"):
        raise EngineError(f"The parcel map '{params.output}' must be a GeoPackage (.gpkg): its style is stored in it.")
    check_output_path(params.output)
    if (params.probabilities is None) == (params.job is None):
        raise EngineError(
            "classify-parcels needs either 'probabilities' (a classify probabilities raster: the pixels "
            "way) or 'job' with 'class_field' (the features way), not "
            f"{'both' if params.job is not None else 'neither'}."
        )
    if params.probabilities is not None:
        return parcels_from_probabilities(
            params.parcels,
            params.probabilities,
            params.output,
            params.layer,
            params.output_layer,
            params.classes,
            reporter,
        )
    if not params.class_field:
        raise EngineError(
            "The features way fits a classifier on parcels of known class: give 'class_field', the "
            "parcels' field holding it (empty for parcels to classify)."
        )

    settings = ParcelFeatureSettings(params.feature_set, params.classifier, seed=params.seed, way=params.way)
    return parcels_from_features(
        load_job(params.job),
        params.parcels,
        params.class_field,
        params.output,
        params.layer,
        params.output_layer,
        settings,
        reporter,
    )
