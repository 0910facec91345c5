"""Few labels: labels, feature sets, embedding sources, classifiers, folds and metrics, selection, the probe file and head, the fit workflow, the report."""
