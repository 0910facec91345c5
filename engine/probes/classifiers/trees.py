"""Tree ensembles (scikit-learn) stored as plain arrays, rebuilt into scikit-learn's own trees.

A fitted ensemble is reduced to its node arrays (children, split feature, threshold,
leaf values), concatenated over trees with an offsets array, so that a probe file is
safetensors plus JSON like every other probe: nothing is unpickled. Loading fills the
installed scikit-learn's node records from those arrays (fields that only serve
fitting, such as impurity or sample counts, are left at zero) and predicts with its
compiled trees. The layout is versioned (``TREE_FORMAT``); a file of another layout,
or an installed scikit-learn whose trees lack a field we need, is refused by name.

Layout 2 stores each array in the narrowest dtype that holds it exactly: node indices and
features as 8/16/32-bit integers, forest thresholds as float32 rounded down (the trees
compare float32 inputs, and for a float32 x, x <= t holds exactly when x <= the largest
float32 not above t), and forest class shares for the leaves only, in float32 (internal
nodes' shares never enter a prediction). Layout 3 stores a pure leaf (one class: most leaves of a
fully grown tree) as that class's index, and class shares only for the other leaves: exactly the
same predictions, a fraction of the size (class shares were most of a forest file), and only
the node fields that cannot be derived (engine.probes.classifiers.trees.compact_forest_nodes). Layouts 1
(every field in 64 bits, shares for every node) and 2 are still read.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.runtime.progress import report_within

TREE_FORMAT = 3
CHUNK = 10  # trees (or boosting rounds) fitted between two progress reports
READABLE_FORMATS = (1, 2, 3)
# Node fields prediction needs; any other field of scikit-learn's node record is left at zero.
FOREST_FIELDS = ("left_child", "right_child", "feature", "threshold", "missing_go_to_left")
BOOSTING_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf")
# Older scikit-learn releases had no missing-value support; features here are always finite.
OPTIONAL_FIELDS = {"missing_go_to_left"}


def _sklearn():
    try:
        import sklearn  # lazy: keeps scikit-learn out of this module
    except ImportError:
        raise EngineError(
            "Random forest and gradient boosting probes need scikit-learn, which is missing from the "
            "engine's Python environment: pip install scikit-learn."
        ) from None
    return sklearn


def _threads() -> int:
    import torch  # lazy: keeps torch out of this module

    return max(1, torch.get_num_threads())


def _check_format(architecture: dict[str, Any], kind: str, installed: np.dtype, needed: tuple[str, ...]) -> None:
    written = int(architecture.get("tree_format", 0))
    version = architecture.get("sklearn_version", "unknown")
    if written not in READABLE_FORMATS:
        raise EngineError(
            f"This {kind} probe stores its trees in layout {written} (scikit-learn {version}), but this engine reads "
            f"layouts {', '.join(map(str, READABLE_FORMATS))}: fit the probe again with this engine."
        )
    missing = [f for f in needed if f not in installed.names and f not in OPTIONAL_FIELDS]
    if missing:
        raise EngineError(
            f"The installed scikit-learn {_sklearn().__version__} builds {kind} trees without the field(s) "
            f"{', '.join(missing)} that this probe (written with scikit-learn {version}) needs: install scikit-learn "
            f"{version}, or fit the probe again."
        )


def _node_records(
    arrays: dict[str, np.ndarray], dtype: np.dtype, fields: tuple[str, ...], start: int, stop: int
) -> np.ndarray:
    nodes = np.zeros(stop - start, dtype=dtype)
    for name in fields:
        if name in dtype.names and name in arrays:
            nodes[name] = arrays[name][start:stop]
    return nodes


def narrowest_int(values: np.ndarray) -> np.ndarray:
    """``values`` in the smallest signed integer type holding them all."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


def float32_at_most(values: np.ndarray) -> np.ndarray:
    """The largest float32 not above each value: a split ``x <= t`` on float32 inputs keeps its
    every outcome with this threshold."""
    rounded = values.astype(np.float32)
    above = rounded.astype(np.float64) > values
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def _concatenated(per_tree: list[np.ndarray], fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Node fields over all trees, each in its narrowest exact dtype (float fields in float64 here;
    the forest narrows its thresholds itself), plus the trees' offsets."""
    out = {}
    for name in fields:
        if name not in per_tree[0].dtype.names:
            continue
        values = np.concatenate([nodes[name] for nodes in per_tree])
        out[name] = (
            values.astype(np.float64) if name in ("threshold", "num_threshold", "value") else narrowest_int(values)
        )
    out["offsets"] = narrowest_int(np.cumsum([0] + [len(nodes) for nodes in per_tree]))
    return out


def forest_node_values(architecture: dict[str, Any], arrays: dict[str, np.ndarray], n_classes: int) -> np.ndarray:
    """Class shares of every node (n_nodes, n_classes): layout 2 stores the leaves' only."""
    layout = int(architecture.get("tree_format", 0))
    if layout == 1:
        return np.asarray(arrays["values"], np.float64)
    leaves = np.asarray(arrays["left_child"]) == -1
    if layout == 2:
        shares = np.asarray(arrays["values"], np.float64)  # every leaf, in node order
    else:
        leaf_class = np.asarray(arrays["leaf_class"], np.int64)
        pure = leaf_class >= 0
        shares = np.zeros((leaf_class.size, n_classes), np.float64)
        shares[np.flatnonzero(pure), leaf_class[pure]] = 1.0
        shares[~pure] = arrays["values"]  # the mixed leaves, in node order
    values = np.zeros((leaves.size, n_classes), np.float64)
    values[leaves] = shares
    return values


LEAF = -1  # a leaf's children in scikit-learn's trees
UNDEFINED = -2  # a leaf's feature and threshold


def _local_index(offsets: np.ndarray, n: int) -> np.ndarray:
    """Each node's index within its own tree (nodes of all trees concatenated, ``offsets`` between)."""
    offsets = np.asarray(offsets, np.int64)
    return np.arange(n) - np.repeat(offsets[:-1], np.diff(offsets))


def compact_forest_nodes(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Layout 3's node fields: the right child of every node; feature and threshold of the internal
    nodes only; the left child only where it is not the next node (scikit-learn grows trees depth
    first, so it always is); no missing-value direction (the inputs are always finite)."""
    right = np.asarray(arrays["right_child"])
    internal = right != LEAF
    out = {"right_child": right, "feature": arrays["feature"][internal], "threshold": arrays["threshold"][internal]}
    if not np.array_equal(arrays["left_child"][internal], _local_index(arrays["offsets"], right.size)[internal] + 1):
        out["left_child"] = arrays["left_child"]
    return out


def full_forest_nodes(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every node's fields from layout 3's compact ones (compact_forest_nodes)."""
    right = np.asarray(arrays["right_child"], np.int64)
    internal = right != LEAF
    left = arrays.get("left_child")
    if left is None:
        left = np.where(internal, _local_index(arrays["offsets"], right.size) + 1, LEAF)
    feature = np.full(right.size, UNDEFINED, np.int64)
    feature[internal] = arrays["feature"]
    threshold = np.full(right.size, UNDEFINED, np.float64)
    threshold[internal] = arrays["threshold"]
    return dict(arrays, left_child=np.asarray(left), right_child=right, feature=feature, threshold=threshold)


def _class_columns(probabilities: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread probabilities over the fitted classes into all ``n_classes`` columns (a training
    fold may lack a class)."""
    out = np.zeros((len(probabilities), n_classes), np.float32)
    out[:, classes] = probabilities
    return out


class StoredEnsemble:
    """What both ensembles share: their stored form and the classifier interface around predict_proba."""

    def __init__(self, classes: np.ndarray, arrays: dict[str, np.ndarray], architecture: dict[str, Any]):
        self.classes = np.asarray(classes, np.int64)
        self.in_dim, self.n_classes = int(architecture["in_dim"]), int(architecture["n_classes"])
        self._arrays, self._architecture = arrays, architecture

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(-1)

    def architecture(self) -> dict[str, Any]:
        return dict(self._architecture)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self._arrays)


# ---------------------------------------------------------------- random forest


class ForestClassifier(StoredEnsemble):
    """A random forest or extra-trees ensemble: both average the class shares of plain decision trees."""

    def __init__(
        self, trees: list, values: list[np.ndarray], arrays: dict[str, np.ndarray], architecture: dict[str, Any]
    ):
        super().__init__(arrays["classes"], arrays, architecture)
        self.kind = architecture["kind"]
        self.trees, self.values = trees, values

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        total = np.zeros((len(x), self.classes.size), np.float64)
        for t, (tree, values) in enumerate(zip(self.trees, self.values)):
            total += values[tree.apply(x)]
            report_within((t + 1) / len(self.trees))
        return _class_columns(total / len(self.trees), self.classes, self.n_classes)

    @classmethod
    def from_arrays(cls, architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> ForestClassifier:
        _sklearn()
        from sklearn.tree._tree import NODE_DTYPE, Tree  # lazy: keeps scikit-learn out of this module

        _check_format(architecture, architecture["kind"].replace("_", " "), NODE_DTYPE, FOREST_FIELDS)
        offsets, depths = arrays["offsets"], arrays["max_depth"]
        classes = arrays["classes"]
        stored = arrays
        if int(architecture.get("tree_format", 0)) >= 3:
            arrays = full_forest_nodes(arrays)
        node_values = forest_node_values(architecture, arrays, classes.size)
        trees, values = [], []
        for t in range(len(offsets) - 1):
            start, stop = int(offsets[t]), int(offsets[t + 1])
            leaf_values = node_values[start:stop]
            tree = Tree(int(architecture["in_dim"]), np.array([classes.size], dtype=np.intp), 1)
            tree.__setstate__(
                {
                    "max_depth": int(depths[t]),
                    "node_count": stop - start,
                    "nodes": _node_records(arrays, NODE_DTYPE, FOREST_FIELDS, start, stop),
                    "values": leaf_values[:, None, :].copy(),
                }
            )
            trees.append(tree)
            values.append(leaf_values)
        return cls(trees, values, stored, architecture)


def grown_in_chunks(estimator, x: np.ndarray, y: np.ndarray, parameter: str, total: int) -> None:
    """Fit ``estimator`` with its ``parameter`` (trees or rounds) raised ``CHUNK`` at a time under
    warm start: progress between chunks (report_within), and a cancel takes effect within one chunk.
    scikit-learn draws the trees' seeds and continues boosting so that the result equals one fit."""
    estimator.set_params(warm_start=True)
    for built in range(min(CHUNK, total), total + CHUNK, CHUNK):
        estimator.set_params(**{parameter: min(built, total)})
        with warnings.catch_warnings():
            # It warns that "balanced" class weights under warm start would differ were the data to
            # change between fits: every chunk here sees the same data.
            warnings.filterwarnings("ignore", message="class_weight presets", category=UserWarning)
            estimator.fit(x, y)
        report_within(min(built, total) / total)
        if built >= total:
            break


def _fit_forest(estimator, kind: str, x: np.ndarray, y: np.ndarray, n_classes: int, config) -> ForestClassifier:
    grown_in_chunks(estimator, np.asarray(x, np.float32), y, "n_estimators", config.trees)
    states = [tree.tree_.__getstate__() for tree in estimator.estimators_]
    arrays = _concatenated([s["nodes"] for s in states], FOREST_FIELDS)
    arrays["threshold"] = float32_at_most(arrays["threshold"])
    # Leaf class shares (older releases store counts: normalised here to one meaning).
    values = np.concatenate([s["values"][:, 0, :] for s in states]).astype(np.float64)
    leaves = arrays["left_child"] == -1
    shares = (values[leaves] / np.maximum(values[leaves].sum(1, keepdims=True), 1e-12)).astype(np.float32)
    top = shares.argmax(1)
    pure = shares[np.arange(len(shares)), top] == 1.0  # one class only: its share is exactly 1
    arrays["leaf_class"] = narrowest_int(np.where(pure, top, -1))
    arrays["values"] = shares[~pure]
    arrays = {k: v for k, v in arrays.items() if k not in FOREST_FIELDS} | compact_forest_nodes(arrays)
    arrays["max_depth"] = narrowest_int(np.array([s["max_depth"] for s in states]))
    arrays["classes"] = narrowest_int(estimator.classes_)
    architecture = {
        "kind": kind,
        "in_dim": int(x.shape[1]),
        "n_classes": n_classes,
        "trees": config.trees,
        "tree_format": TREE_FORMAT,
        "sklearn_version": _sklearn().__version__,
    }
    return ForestClassifier.from_arrays(architecture, arrays)


def fit_random_forest(x: np.ndarray, y: np.ndarray, n_classes: int, config) -> ForestClassifier:
    _sklearn()
    from sklearn.ensemble import RandomForestClassifier  # lazy: keeps scikit-learn out of this module

    forest = RandomForestClassifier(
        n_estimators=config.trees,
        class_weight="balanced" if config.class_weighting else None,
        random_state=config.seed,
        n_jobs=_threads(),
    )
    return _fit_forest(forest, "random_forest", x, y, n_classes, config)


def fit_extra_trees(x: np.ndarray, y: np.ndarray, n_classes: int, config) -> ForestClassifier:
    """Extremely randomized trees: random split thresholds, every cell in every tree (no bootstrap)."""
    _sklearn()
    from sklearn.ensemble import ExtraTreesClassifier  # lazy: keeps scikit-learn out of this module

    forest = ExtraTreesClassifier(
        n_estimators=config.trees,
        class_weight="balanced" if config.class_weighting else None,
        random_state=config.seed,
        n_jobs=_threads(),
    )
    return _fit_forest(forest, "extra_trees", x, y, n_classes, config)


# ---------------------------------------------------------------- gradient boosting


class BoostingClassifier(StoredEnsemble):
    kind = "gradient_boosting"

    def __init__(self, predictors: list[list], arrays: dict[str, np.ndarray], architecture: dict[str, Any]):
        super().__init__(arrays["classes"], arrays, architecture)
        self.predictors, self.baseline = predictors, np.asarray(arrays["baseline"], np.float64)

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        from sklearn.ensemble._hist_gradient_boosting.common import X_BITSET_INNER_DTYPE  # lazy: scikit-learn on use

        x = np.ascontiguousarray(x, np.float64)
        no_categories = np.zeros((0, 8), X_BITSET_INNER_DTYPE)
        feature_map = np.zeros(self.in_dim, np.uint32)
        raw = np.tile(self.baseline, (len(x), 1))
        for i, iteration in enumerate(self.predictors):
            for k, predictor in enumerate(iteration):
                raw[:, k] += predictor.predict(x, no_categories, feature_map, _threads())
            report_within((i + 1) / len(self.predictors))
        return raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raw = self.raw_scores(x)
        if raw.shape[1] == 1:  # binary: one logit for the second class
            second = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            probabilities = np.stack([1.0 - second, second], axis=1)
        else:
            raw -= raw.max(1, keepdims=True)
            probabilities = np.exp(raw)
            probabilities /= probabilities.sum(1, keepdims=True)
        return _class_columns(probabilities, self.classes, self.n_classes)

    @classmethod
    def from_arrays(cls, architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> BoostingClassifier:
        _sklearn()
        from sklearn.ensemble._hist_gradient_boosting.common import (  # lazy: scikit-learn on use
            PREDICTOR_RECORD_DTYPE,
            X_BITSET_INNER_DTYPE,
        )
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor  # lazy: scikit-learn on use

        _check_format(architecture, "gradient boosting", PREDICTOR_RECORD_DTYPE, BOOSTING_FIELDS)
        offsets, per_iteration = arrays["offsets"], int(architecture["trees_per_iteration"])
        no_categories = np.zeros((0, 8), X_BITSET_INNER_DTYPE)
        flat = [
            TreePredictor(
                _node_records(arrays, PREDICTOR_RECORD_DTYPE, BOOSTING_FIELDS, int(offsets[t]), int(offsets[t + 1])),
                no_categories,
                no_categories,
            )
            for t in range(len(offsets) - 1)
        ]
        predictors = [flat[i : i + per_iteration] for i in range(0, len(flat), per_iteration)]
        return cls(predictors, arrays, architecture)


def fit_gradient_boosting(x: np.ndarray, y: np.ndarray, n_classes: int, config) -> BoostingClassifier:
    sklearn = _sklearn()
    from sklearn.ensemble import HistGradientBoostingClassifier  # lazy: keeps scikit-learn out of this module

    # Fixed number of rounds, no early stopping: its internal split would ignore the spatial blocks.
    booster = HistGradientBoostingClassifier(
        max_iter=config.trees,
        early_stopping=False,
        random_state=config.seed,
        class_weight="balanced" if config.class_weighting else None,
    )
    grown_in_chunks(booster, np.asarray(x, np.float64), y, "max_iter", config.trees)
    per_tree = [predictor.nodes for iteration in booster._predictors for predictor in iteration]
    arrays = _concatenated(per_tree, BOOSTING_FIELDS)
    arrays["baseline"] = np.asarray(booster._baseline_prediction, np.float64).reshape(-1)
    arrays["classes"] = narrowest_int(booster.classes_)
    architecture = {
        "kind": BoostingClassifier.kind,
        "in_dim": int(x.shape[1]),
        "n_classes": n_classes,
        "trees": config.trees,
        "trees_per_iteration": int(booster.n_trees_per_iteration_),
        "tree_format": TREE_FORMAT,
        "sklearn_version": sklearn.__version__,
    }
    return BoostingClassifier.from_arrays(architecture, arrays)
