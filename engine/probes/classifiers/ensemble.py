"""A soft vote of fitted classifiers, each reading its own columns of one feature matrix.

``auto`` keeps the few best candidates (classifier x feature set) instead of one: their
averaged probabilities vary less from one part of the map to another than any single
candidate's (engine.probes.selection). The members may read different feature sets; the vote
reads their union, and each member its own columns of it. Stored like every kind: the
members' arrays under ``member<i>/`` plus their column indices, and the members'
architectures in the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.probes.classifiers.registry import ENSEMBLE, rebuild_classifier
from engine.runtime.progress import report_within, share_of_step


class EnsembleClassifier:
    kind = ENSEMBLE

    def __init__(self, members: Sequence[Any], columns: Sequence[np.ndarray], in_dim: int):
        if not members or len(members) != len(columns):
            raise ValueError("an ensemble needs one column list per member")
        self.members = list(members)
        self.columns = [np.asarray(c, np.int64) for c in columns]
        self.in_dim, self.n_classes = int(in_dim), int(self.members[0].n_classes)
        for member, cols in zip(self.members, self.columns):
            if (
                member.n_classes != self.n_classes
                or member.in_dim != cols.size
                or (cols.size and cols.max() >= self.in_dim)
            ):
                raise ValueError("the members' classes or columns do not match the ensemble")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        count, out = len(self.members), []
        for i, (member, cols) in enumerate(zip(self.members, self.columns)):
            with share_of_step(i / count, (i + 1) / count):
                out.append(member.predict_proba(x[:, cols]))
            report_within((i + 1) / count)
        return np.mean(out, axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(-1)

    def architecture(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "in_dim": self.in_dim,
            "n_classes": self.n_classes,
            "members": [member.architecture() for member in self.members],
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (member, cols) in enumerate(zip(self.members, self.columns)):
            out[f"member{i}/columns"] = cols
            out.update({f"member{i}/{name}": value for name, value in member.arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, architecture: dict[str, Any], arrays: dict[str, np.ndarray]) -> EnsembleClassifier:
        members, columns = [], []
        for i, member in enumerate(architecture["members"]):
            prefix = f"member{i}/"
            own = {name[len(prefix) :]: value for name, value in arrays.items() if name.startswith(prefix)}
            columns.append(own.pop("columns"))
            members.append(rebuild_classifier(member, own))
        model = cls(members, columns, architecture["in_dim"])
        if model.n_classes != architecture["n_classes"]:
            raise ValueError("the stored members do not match the architecture")
        return model


def soft_vote(
    members: Sequence[Any], member_columns: Sequence[Sequence[str]], union: Sequence[str]
) -> EnsembleClassifier:
    """The vote of ``members`` fitted on the named columns, reading the ``union`` columns."""
    index = {name: i for i, name in enumerate(union)}
    return EnsembleClassifier(
        members, [np.array([index[n] for n in names], np.int64) for names in member_columns], len(union)
    )
