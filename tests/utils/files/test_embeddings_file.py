"""utils/files/embeddings_file.py: embeddings.npz written and read back (plain NumPy, no pickle, no temporary file
left), and one-line errors for incomplete, foreign or inconsistent files."""
import json

import numpy as np
import pytest

from utils.files.embeddings_file import REQUIRED_META, load_embeddings, save_embeddings
from utils.script.errors import BadInputError


def test_embeddings_file_round_trip_and_bad_files(tmp_path):
    meta = {"checkpoint": "/a/best.pth", "split": "val", "frames": np.int64(36), "frequency": 4, "clips": "all",
            "clip_stride": 72}
    path = save_embeddings(tmp_path / "e.npz", ["b.avi", "a.avi"], [40, 60], np.eye(2, 3), [41.5, 58.0], meta)
    data = load_embeddings(path)
    assert data["names"] == ["b.avi", "a.avi"] and data["meta"] == {**meta, "frames": 36, "format_version": 1}
    assert data["embeddings"].dtype == np.float32 and data["ef"].dtype == np.float64
    np.testing.assert_array_equal(data["predictions"], [41.5, 58.0])
    with np.load(path, allow_pickle=False) as plain:  # plain NumPy reads it, no pickle needed
        assert sorted(plain.files) == ["ef", "embeddings", "meta", "names", "predictions"]
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]  # no temporary file left

    with pytest.raises(ValueError, match="meta lacks clips"):
        save_embeddings(tmp_path / "f.npz", ["a"], [1], [[0.0]], [1], {k: 1 for k in REQUIRED_META[:-1]})
    np.savez(tmp_path / "partial.npz", names=np.array(["a.avi"]), ef=np.array([50.0]))
    with pytest.raises(BadInputError, match=r"partial.npz: array 'embeddings' missing"):
        load_embeddings(tmp_path / "partial.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(BadInputError, match="text.npz is not a .npz archive"):
        load_embeddings(tmp_path / "text.npz")
    np.savez(tmp_path / "short.npz", names=np.array(["a.avi"]), ef=np.array([50.0, 60.0]), embeddings=np.eye(2),
             predictions=np.array([1.0, 2.0]), meta=np.array(json.dumps({**meta, "frames": 36})))
    with pytest.raises(BadInputError, match="'names' has 1 entries but 'embeddings' has 2 rows"):
        load_embeddings(tmp_path / "short.npz")
    with pytest.raises(FileNotFoundError, match="embeddings file not found"):
        load_embeddings(tmp_path / "nowhere.npz")
