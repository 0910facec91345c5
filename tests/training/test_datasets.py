import json
import shutil

import h5py
import numpy as np
import pytest

from engine.errors import EngineError
from tests.training.layouts import write_flair, write_pastis, write_treesatai
from training.config import DatasetConfig
from training.datasets import collate, open_dataset
from training.datasets.common import conform_s1


def _open(fmt, root, split="train", **kwargs):
    segmentation = kwargs.pop("segmentation", False)
    return open_dataset(
        DatasetConfig(format=fmt, root=str(root), **kwargs), split, train=True, segmentation=segmentation
    )


def test_treesatai_layout(tmp_path):
    root = write_treesatai(tmp_path / "TreeSat", tiles=3, dates=(70, 9))
    ds = _open("treesatai", root, modalities=["aerial", "s2", "s1_asc_ratio"], max_dates=50)
    batch = collate([ds[(0, 1)], ds[(1, 2)]])
    assert batch.inputs["aerial"].shape == (2, 4, 300, 300)  # cropped to 60 m
    assert batch.inputs["s2"].shape == (2, 50, 10, 6, 6)  # at most 50 of 70 dates
    assert batch.inputs["s1_asc_ratio"].shape == (2, 9, 3, 6, 6)  # VV/VH derived
    s1 = batch.inputs["s1_asc_ratio"][0]
    assert np.allclose(s1[:, 2], s1[:, 0] / s1[:, 1], rtol=1e-5)
    days = batch.dates["s2"][0]
    assert (days >= 1).all() and (days <= 366).all() and (days.diff() > 0).all()
    # The label keeps the genus above 7 % and drops Picea at 5 %.
    assert batch.label[0].sum() == 1 and batch.label[0, 0] == 1
    # Same seed, same dates; another seed, other dates.
    assert np.array_equal(ds[(0, 1)].dates["s2"], ds[(0, 1)].dates["s2"])
    assert not np.array_equal(ds[(0, 1)].dates["s2"], ds[(0, 5)].dates["s2"])


def test_treesatai_dates_from_real_sample(shared_data, tmp_path):
    """The real TreeSatAI-TS tile in the official layout (links to the shared sample)."""
    sample = shared_data / "treesatai_sample"
    name = "Abies_alba_1_1005_WEFL_NLF.tif"
    (tmp_path / "aerial").mkdir()
    (tmp_path / "sentinel-ts").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "aerial" / name).symlink_to(sample / name)
    (tmp_path / "sentinel-ts" / name.replace(".tif", ".h5")).symlink_to(sample / name.replace(".tif", ".h5"))
    (tmp_path / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps({name: [["Abies", 1.0]]}))
    (tmp_path / "train_filenames.lst").write_text(name + "\n")
    ds = open_dataset(DatasetConfig(format="treesatai", root=str(tmp_path)), "train", train=False)
    sample_ = ds[0]
    assert sample_.inputs["aerial"].shape == (4, 300, 300)
    assert sample_.inputs["s2"].shape == (50, 10, 6, 6)
    with h5py.File(sample / name.replace(".tif", ".h5")) as h5:
        first = h5["sen-2-products"][0].decode()
    assert first.startswith("S2A_MSIL2A_20200102")
    assert sample_.dates["s2"].min() >= 2 and sample_.dates["s2"].max() <= 365
    assert sample_.dates["s1_asc"].shape == (50,)
    assert np.isfinite(sample_.inputs["s1_asc"]).all()


def test_pastis_layout_classification_and_segmentation(tmp_path):
    root = write_pastis(tmp_path / "PASTIS", patches=5)
    ds = _open("pastis", root, modalities=["spot", "s2", "s1_asc", "s1_des_ratio"], max_dates=4)
    assert len(ds) == 3  # folds 1-3 of five patches in folds 1..5
    sample = ds[0]
    assert sample.inputs["spot"].shape == (3, 320, 320)
    assert sample.inputs["s2"].shape == (4, 10, 32, 32)
    assert sample.inputs["s1_asc"].shape[1] == 2 and sample.inputs["s1_des_ratio"].shape[1] == 3
    assert sample.label.shape == (18,)  # background and void left out
    target = np.load(root / "ANNOTATIONS" / "TARGET_10000.npy")[0]
    expected = sorted(c - 1 for c in np.unique(target) if 0 < c < 19)
    assert list(np.flatnonzero(sample.label)) == expected
    seg = _open("pastis", root, "test", modalities=["s2"], segmentation=True)
    assert len(seg) == 1 and seg[0].label.shape == (32, 32) and seg[0].label.max() <= 19


def test_flair_layout(tmp_path):
    root = write_flair(tmp_path / "FLAIR")
    ds = _open("flair", root, modalities=["aerial_elevation", "s2"], segmentation=True)
    sample = ds[0]
    assert sample.inputs["aerial_elevation"].shape == (5, 500, 500)
    assert sample.inputs["s2"].shape == (6, 10, 10, 10)
    assert sample.label.shape == (500, 500) and 0 <= sample.label.min() and sample.label.max() <= 12
    assert len(_open("flair", root, "test")) == 3
    with pytest.raises(EngineError, match="splits.json"):
        _open("flair", root, "val")
    (root / "splits.json").write_text(json.dumps({"val": ["D001_2019"]}))
    assert len(_open("flair", root, "val")) == 3


def test_wrong_layout_folder_is_named(tmp_path):
    root = write_treesatai(tmp_path / "TreeSat", tiles=2)
    with pytest.raises(EngineError, match="not in the Pastis layout.*metadata.geojson"):
        _open("pastis", root)
    with pytest.raises(EngineError, match="not in the Flair layout.*flair_aerial_train"):
        _open("flair", root)
    shutil.rmtree(root / "sentinel-ts")
    with pytest.raises(EngineError, match="Sentinel time-series folder"):
        _open("treesatai", root)
    with pytest.raises(EngineError, match="does not exist"):
        _open("treesatai", tmp_path / "nowhere")
    with pytest.raises(EngineError, match="no modality 'spot'"):
        _open("treesatai", write_treesatai(tmp_path / "T2", tiles=2), modalities=["spot"])


def test_s1_ratio_in_db_and_linear():
    linear = np.full((2, 2, 1, 1), 0.5, dtype=np.float32)
    linear[:, 1] = 0.25
    assert np.allclose(conform_s1(linear, 3)[:, 2], 2.0)
    db = 10 * np.log10(linear)
    assert np.allclose(conform_s1(db, 3)[:, 2], db[:, 0] - db[:, 1])
    assert conform_s1(conform_s1(linear, 3), 2).shape[1] == 2
