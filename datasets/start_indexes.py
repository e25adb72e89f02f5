"""Fixed clip start indexes for testing: load (pickle / JSON / CSV) and save (JSON).

The released `test_start_indexes.pkl` is a pickled dict "<id>.avi" -> int64 numpy array of 3
starts. Unpickling can run arbitrary code, so it is read with `SafeUnpickler`, which admits only
the globals a dict of numpy arrays needs and refuses any other before anything is called.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
from pathlib import Path

import numpy as np

from utils.script.errors import BadInputError, MissingInputError, UserError
from utils.files.atomic import atomic_open

from .filelist import with_avi
from .tables import read_csv_file


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class UnreadablePickleError(BadInputError, pickle.UnpicklingError):
    """A truncated or garbled pickle."""


def _numpy_core(submodule: str):
    # numpy >= 2 calls its core package `numpy._core`; older pickles say `numpy.core`
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # pickle protocols < 3 store the bytes of a numpy array as _codecs.encode(text, "latin1")
    if encoding != "latin1":
        raise ValueError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "int"): int,
               ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # pickle protocol 5
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for dicts/lists of ints and numpy arrays only."""

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file)
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global '{module}.{name}' "
                "(only numpy arrays, dicts, lists and ints are allowed)") from None


def _validate(raw, path: str) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict) or not raw:
        raise BadInputError(f"{path}: expected a non-empty mapping video name -> start indexes, "
                            f"got {type(raw).__name__}")
    starts, length = {}, None
    for name, values in raw.items():
        array = np.asarray(values)
        if array.ndim != 1 or array.size == 0:
            raise BadInputError(f"{path}: starts of {name} must be a non-empty 1-D list, got shape {array.shape}")
        if array.dtype.kind not in "iu":
            raise BadInputError(f"{path}: starts of {name} must be integers, got {array.tolist()}")
        if length is None:
            length = array.size
        elif array.size != length:
            raise BadInputError(f"{path}: {name} has {array.size} starts, other videos have {length}")
        starts[with_avi(name)] = array.astype(np.int64)
    if len(starts) != len(raw):
        raise BadInputError(f"{path}: the same video is listed twice (with and without .avi)")
    return starts


def _read_csv_starts(path: str) -> dict[str, list[int]]:
    """FileName,start0,start1,... read as text (names stay as written: '0001' is not the number 1), every
    start checked in its own row; empty unnamed columns (trailing commas) are ignored."""
    table = read_csv_file(path, "columns FileName,start0,start1,...", dtype=str, keep_default_na=False)
    table = table.loc[:, [not (str(c).startswith("Unnamed:") and not table[c].str.strip().any())
                          for c in table.columns]]
    columns = [c for c in table.columns if c != "FileName"]
    if "FileName" not in table.columns or not columns:
        raise BadInputError(f"{path}: expected columns FileName,start0,start1,..., got {','.join(table.columns)}")
    raw = {}
    for row, name in enumerate(table["FileName"].str.strip()):
        if name in raw:
            raise BadInputError(f"{path}: FileName {name} is listed twice")
        starts = []
        for column in columns:
            text = table[column].iloc[row].strip()
            try:
                starts.append(int(text))
            except ValueError:
                raise BadInputError(f"{path} data row {row + 1} (FileName {name}): {column} {text!r} is not an "
                                    "integer start") from None
        raw[name] = starts
    return raw


def load_start_indexes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{"<name>.avi": int64 array [n_clips]} from a .pkl/.pickle, .json or .csv file.

    JSON: {"name": [s0, s1, ...]}; CSV: columns FileName,start0,start1,...; names may omit .avi.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"start index file {path} does not exist")
    suffix = Path(path).suffix.lower()
    if suffix in (".pkl", ".pickle"):
        with open(path, "rb") as f:
            try:
                raw = SafeUnpickler(f, source=path).load()
            except UnsafePickleError:
                raise
            except Exception as e:  # truncated or garbled file
                raise UnreadablePickleError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    elif suffix == ".json":
        with open(path, encoding="utf-8") as f:
            try:
                raw = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadInputError(f"{path}: not valid JSON ({e})") from None
    elif suffix == ".csv":
        raw = _read_csv_starts(path)
    else:
        raise BadInputError(f"{path}: unknown start index format {suffix!r} (use .pkl, .json or .csv)")
    return _validate(raw, path)


def save_start_indexes(starts: dict, path: str | os.PathLike) -> None:
    """Write {name: [ints]} as JSON, atomically (temporary file + os.replace)."""
    path = Path(path)
    data = {with_avi(name): [int(s) for s in np.asarray(values).reshape(-1)] for name, values in starts.items()}
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
