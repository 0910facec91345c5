"""Classifiers a probe can hold, behind one interface and one registry.

Every kind is fitted by ``fit_classifier(x, y, n_classes, config)`` and gives back an
object with ``kind``, ``in_dim``, ``n_classes``, ``predict_proba(x) -> (N, K)`` and
``predict(x)``, plus ``architecture()`` (JSON-able) and ``arrays()`` (name -> numpy
array) from which ``rebuild_classifier`` makes it again: probe files hold only those
arrays in safetensors and that JSON, never a pickle.

Kinds: ``linear`` and ``mlp`` (torch, engine.probes.classifiers.neural), ``knn`` (engine.probes.classifiers.knn),
``random_forest``, ``extra_trees`` and ``gradient_boosting`` (scikit-learn, engine.probes.classifiers.trees).
A probe file may also hold an ``ensemble``: the soft vote ``auto`` keeps (engine.probes.classifiers.ensemble).
"""

from engine.probes.classifiers.registry import (  # noqa: F401  (the package's interface)
    CLASSIFIERS,
    ENSEMBLE,
    STORED_KINDS,
    Classifier,
    ProbeConfig,
    fit_classifier,
    fit_probe,
    rebuild_classifier,
)
