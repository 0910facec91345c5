import numpy as np
import torch
from sklearn.metrics import f1_score, jaccard_score

from training.metrics import MetricAccumulator


def test_multilabel_f1_matches_scikit_learn():
    rng = np.random.default_rng(0)
    target = (rng.random((200, 6)) < 0.4).astype(np.float32)
    logits = rng.normal(size=(200, 6)) + 2.0 * (target - 0.5)
    metric = MetricAccumulator("multilabel", 6)
    for part in np.array_split(np.arange(200), 4):  # accumulated over batches
        metric.update(torch.tensor(logits[part]), torch.tensor(target[part]))
    predicted = (logits >= 0).astype(int)  # sigmoid >= 0.5
    result = metric.compute()
    assert np.isclose(result["weighted_f1"], 100 * f1_score(target, predicted, average="weighted"))
    assert np.isclose(result["macro_f1"], 100 * f1_score(target, predicted, average="macro"))
    assert np.isclose(result["micro_f1"], 100 * f1_score(target, predicted, average="micro"))


def test_segmentation_miou_ignores_the_void_label():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, (3, 16, 16))
    target[:, :2] = 19  # void
    logits = rng.normal(size=(3, 5, 16, 16))
    metric = MetricAccumulator("segmentation", 5, ignore_index=19)
    metric.update(torch.tensor(logits), torch.tensor(target))
    keep = target != 19
    predicted = logits.argmax(1)
    expected = jaccard_score(target[keep], predicted[keep], average="macro")
    assert np.isclose(metric.compute()["miou"], 100 * expected)
    assert np.isclose(metric.compute()["overall_accuracy"], 100 * (predicted[keep] == target[keep]).mean())
