"""datasets/start_indexes.py: start-index files (pickles through a restricted unpickler, JSON, CSV) read with
one-line errors naming the file and cell, and the official file on the real EchoNet samples (../shared) with its
generated twin: a pickle in the same layout on generated samples, run on a clean clone too."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

from conftest import OFFICIAL_STARTS, SAMPLES, expected_clip, reference_decode
from datasets import EchoNetTest, UnsafePickleError, load_start_indexes
from utils.script.errors import BadInputError


def test_start_index_file_validation(tmp_path):
    (tmp_path / "uneven.json").write_text(json.dumps({"a": [1, 2], "b": [1]}))
    with pytest.raises(ValueError, match="uneven.json: b has 1 starts"):
        load_start_indexes(tmp_path / "uneven.json")
    (tmp_path / "float.json").write_text(json.dumps({"a": [1.5, 2]}))
    with pytest.raises(ValueError, match="float.json: starts of a must be integers"):
        load_start_indexes(tmp_path / "float.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="list.json"):
        load_start_indexes(tmp_path / "list.json")
    (tmp_path / "starts.txt").write_text("x")
    with pytest.raises(ValueError, match="starts.txt: unknown start index format"):
        load_start_indexes(tmp_path / "starts.txt")
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        load_start_indexes(tmp_path / "absent.pkl")
    # plain pickles of numpy arrays, every protocol
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump({"x.avi": np.array([3, 1, 2]), "y": [np.int64(0), 4, 5]}, f, protocol=protocol)
        loaded = load_start_indexes(path)
        assert loaded.keys() == {"x.avi", "y.avi"} and loaded["x.avi"].tolist() == [3, 1, 2]
        assert loaded["y.avi"].dtype == np.int64


def test_csv_start_files_keep_names_as_written_and_name_the_bad_cell(tmp_path):
    (tmp_path / "numbers.csv").write_text("FileName,start0,start1,\n0001,2,3,\n1e5,4,5,\n")  # + trailing commas
    loaded = load_start_indexes(tmp_path / "numbers.csv")
    assert {name: starts.tolist() for name, starts in loaded.items()} == {"0001.avi": [2, 3], "1e5.avi": [4, 5]}
    (tmp_path / "hole.csv").write_text("FileName,start0,start1\na,1,2\nb,1,\n")
    with pytest.raises(BadInputError, match=r"hole.csv data row 2 \(FileName b\): start1 '' is not an integer"):
        load_start_indexes(tmp_path / "hole.csv")
    for name, text in (("empty.csv", ""), ("ragged.csv", "FileName,start0\na,1\nb,1,2,3\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(BadInputError, match=rf"^(cannot read )?\S*{name}"):
            load_start_indexes(tmp_path / name)
    (tmp_path / "latin1.json").write_bytes(b'{"\xff": [1, 2]}')
    with pytest.raises(BadInputError, match="latin1.json: not valid JSON"):
        load_start_indexes(tmp_path / "latin1.json")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


class _EvilSystem:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _EvilEval:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (eval, (f"open({self.target!r}, 'w')",))


@pytest.mark.parametrize("evil, refused", [(_Evil, "io.open"), (_EvilSystem, "system"), (_EvilEval, "builtins.eval")])
def test_restricted_unpickler_refuses_code(tmp_path, evil, refused):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a.avi": np.array([1, 2, 3]), "b.avi": evil(str(target))}))
    with pytest.raises(UnsafePickleError, match=rf"evil.pkl: refusing to unpickle global '.*{refused}'") as error:
        load_start_indexes(path)
    assert isinstance(error.value, pickle.UnpicklingError) and "\n" not in str(error.value)
    assert not target.exists()


def official_layout_starts(samples, path):
    """Starts for the generated samples, pickled in the official file's layout (protocol 4, {"<id>.avi":
    int64 array of 3 starts}, with names of videos that are not in the folder too): 0, the middle and the last
    start of a 36 x 4 clip (span 141) in the video zero-padded to 144 frames; -> {name: [starts]}."""
    import pandas as pd

    table = pd.read_csv(samples / "FileList.csv")
    starts = {}
    for name, n_frames in zip(table["FileName"], table["NumberOfFrames"]):
        last = max(n_frames, 36 * 4) - (4 * 35 + 1)
        starts[f"{name}.avi"] = [0, last // 2, last]
    layout = {**{name: np.array(s, dtype=np.int64) for name, s in starts.items()},
              "0XNOTINTHEFOLDER.avi": np.array([5, 7, 51], dtype=np.int64)}
    path.write_bytes(pickle.dumps(layout, protocol=4))
    return starts


@pytest.mark.parametrize("source", [pytest.param("real", marks=pytest.mark.skipif(
    not (SAMPLES.is_dir() and OFFICIAL_STARTS.is_file()), reason="shared EchoNet samples absent (the [generated] "
                                                                  "twin runs)")), "generated"])
def test_official_start_indexes_on_echonet_samples(tmp_path, source, request):
    """The official start-index pickle on the nine real samples, and its twin: a pickle in the same layout on
    generated samples (conftest's generated_samples). Each clip of EchoNetTest must be the reference clip
    (OpenCV decode, zero padding, float64 normalisation) at the file's starts; the cache gives the same tensors."""
    if source == "real":
        samples, starts_file = SAMPLES, OFFICIAL_STARTS
        official = load_start_indexes(OFFICIAL_STARTS)
        assert len(official) == 1276 and official["0X10A28877E97DF540.avi"].tolist() == [6, 62, 35]
        n_videos = 9
    else:
        samples, starts_file = request.getfixturevalue("generated_samples"), tmp_path / "test_start_indexes.pkl"
        official = official_layout_starts(samples, starts_file)
        assert {name: s.tolist() for name, s in load_start_indexes(starts_file).items()} == \
            {**official, "0XNOTINTHEFOLDER.avi": [5, 7, 51]}
        n_videos = 6
    ds = EchoNetTest(samples, frames=36, frequency=4, path_test_start_indexes=starts_file)
    cached = EchoNetTest(samples, frames=36, frequency=4, path_test_start_indexes=starts_file,
                         cache_dir=tmp_path / "cache")
    assert len(ds) == n_videos and ds.n_clips == 3
    reaches_padding = False
    for index in range(len(ds)):
        item = ds[index]
        name = item["name"]
        assert item["starts"].tolist() == list(official[name])
        decoded = reference_decode(samples / "Videos" / name)
        for j, start in enumerate(list(official[name])):
            assert torch.allclose(item["image"][j], expected_clip(decoded, start, 36, 4), atol=1e-5)
            reaches_padding |= start + 4 * 35 >= len(decoded)
        assert torch.equal(cached[index]["image"], item["image"])  # the cache is bit-identical
    # real: 0X18BA5512BE5D6FFA (129 frames) and 0X129133A90A61A59D (133) are padded; generated: 91 to 120 frames
    assert reaches_padding
