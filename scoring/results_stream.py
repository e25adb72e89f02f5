"""Results written row by row, for runs over thousands of files that may be killed at any moment, and resumed.

- `RowStream`: a CSV file that grows one row per `write`. Each row is ONE os.write of the whole line to a file
  opened with O_APPEND, so a crash, a Ctrl-C or a SIGKILL leaves complete rows only (the write happened or not);
  the file is fsynced every few seconds and on close. A write the full disk cuts short is truncated back to the
  last complete row before the error. A power loss may still cut the last line: reopening or reading drops a
  last line without its newline.
- `ResultFiles`: the files of a keyed result table (one row per key, e.g. a video) and of its detail table
  (rows per key, e.g. its clips) written by one or several processes: process 0 appends to the final files
  themselves, process r > 0 to `STEM.rank<r>.csv` / `STEM.rank<r>.<detail>.csv`. `rewrite` reads every such
  stream, keeps the rows asked for (the last row of a key wins; detail rows only of the keys kept), orders them
  by the keys' input order and writes the final files atomically, removing the per-process ones: the same
  call consolidates before a resume and merges at the end.
- `check_settings` / `write_settings`: the options that shape the results, kept beside them as JSON.
"""
import csv
import io
import json
import math
import os
import re
import time

import numpy as np
import pandas as pd

from utils.files.atomic import atomic_open, atomic_write_json, output_error
from utils.script.errors import BadInputError

FSYNC_SECONDS = 10.0  # a power loss loses at most the rows of the last few seconds
_TAIL_CHUNK = 1 << 16


def format_cell(value) -> str:
    """A CSV cell as this project writes numbers: floats with 5 decimals, missing values empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.5f}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _csv_line(cells) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def drop_cut_line(path) -> None:
    """Truncate `path` after its last newline: a line without one was cut by a crash."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - _TAIL_CHUNK)
            f.seek(start)
            newline = f.read(position - start).rfind(b"\n")
            if newline >= 0:
                position = start + newline + 1
                break
            position = start
        if position != end:
            f.truncate(position)


def _header(path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline()


class RowStream:
    """Append rows (dicts) to the CSV `path` with `columns`, one whole line per write (see the module doc).
    An existing file must have the same header; its cut last line, if any, is dropped first."""

    def __init__(self, path, columns):
        self.path, self.columns = os.fspath(path), list(columns)
        header = _csv_line(self.columns)
        try:
            if os.path.exists(self.path) and os.path.getsize(self.path):
                drop_cut_line(self.path)
            if os.path.exists(self.path) and os.path.getsize(self.path) and _header(self.path) != header:
                raise BadInputError(f"{self.path} holds other columns than this run writes; rerun without "
                                    "--resume to start it over (or move the file away)")
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            if os.fstat(self.fd).st_size == 0:
                self._write(header)
        except OSError as e:
            raise output_error(e, self.path) from None
        self.synced = time.monotonic()

    def _write(self, text: str) -> None:
        """Append one whole line; if the disk fills after part of it went in, cut the file back to where the
        line began, so only complete rows stay, and raise."""
        data = text.encode("utf-8")
        begin = os.fstat(self.fd).st_size  # O_APPEND: the line starts at the end of the file
        written = 0
        try:
            while written < len(data):  # a short write (a signal, a full disk) continues where it stopped
                written += os.write(self.fd, data[written:])
        except OSError:
            if written:
                os.ftruncate(self.fd, begin)
            raise

    def write(self, row: dict) -> None:
        try:
            self._write(_csv_line(format_cell(row.get(column)) for column in self.columns))
            if time.monotonic() - self.synced > FSYNC_SECONDS:
                os.fsync(self.fd)
                self.synced = time.monotonic()
        except OSError as e:
            raise output_error(e, self.path) from None

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_rows(path, columns) -> pd.DataFrame:
    """Every complete row of a stream as text (empty cells ''), or no rows when the file does not exist."""
    if not os.path.exists(path) or not os.path.getsize(path):
        return pd.DataFrame(columns=list(columns), dtype=str)
    drop_cut_line(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != list(columns):
        raise BadInputError(f"{path} holds other columns than this run writes; rerun without --resume to start "
                            "it over (or move the file away)")
    return table


class ResultFiles:
    """The result table `path` (one row per `key`) and its detail table, as streams of `world` processes."""

    def __init__(self, path, columns, detail_columns, key="file", detail="clips"):
        self.path = os.path.abspath(path)
        self.stem = self.path[:-len(".csv")] if self.path.lower().endswith(".csv") else self.path
        self.columns, self.detail_columns, self.key, self.detail = list(columns), list(detail_columns), key, detail
        self.detail_path = f"{self.stem}.{detail}.csv"

    def paths(self, rank: int) -> tuple[str, str]:
        """(rows, detail rows) files that process `rank` appends to."""
        if rank == 0:
            return self.path, self.detail_path
        return f"{self.stem}.rank{rank}.csv", f"{self.stem}.rank{rank}.{self.detail}.csv"

    def open(self, rank: int) -> tuple[RowStream, RowStream]:
        rows, details = self.paths(rank)
        return RowStream(rows, self.columns), RowStream(details, self.detail_columns)

    def rank_files(self) -> list[tuple[str, str]]:
        """The (rows, detail rows) files of processes r > 0 found beside the result, by rank."""
        folder, base = os.path.split(self.stem)
        pattern = re.compile(re.escape(base) + r"\.rank(\d+)\.csv$")
        ranks = sorted(int(m.group(1)) for m in map(pattern.match, os.listdir(folder or ".")) if m)
        return [self.paths(rank) for rank in ranks if rank > 0]

    def rows_written(self) -> int:
        """Complete rows in every process's stream so far (what an interrupted run keeps)."""
        total = 0
        for path, _ in [self.paths(0), *self.rank_files()]:
            if os.path.exists(path):
                with open(path, "rb") as f:
                    total += max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(_TAIL_CHUNK), b"")) - 1)
        return total

    def remove_all(self) -> None:
        """Start over: no stream of an earlier run is left."""
        for pair in [self.paths(0), *self.rank_files()]:
            for path in pair:
                if os.path.exists(path):
                    os.remove(path)

    def rewrite(self, order: dict, keep=None) -> pd.DataFrame:
        """Read every stream, keep the rows whose key is in `order` (key -> input position) and for which
        `keep(table)` (a boolean mask) holds, the last row per key; write them in input order to the final
        files (atomically) with the detail rows of those keys, and remove the per-process files. Returns the
        kept rows."""
        pairs = [self.paths(0), *self.rank_files()]
        rows = pd.concat([read_rows(p, self.columns) for p, _ in pairs], ignore_index=True)
        rows = rows.drop_duplicates(self.key, keep="last")  # a key's latest row decides
        rows = rows[rows[self.key].isin(order.keys())]
        if keep is not None and len(rows):
            rows = rows[keep(rows)]
        rows = rows.iloc[np.argsort(rows[self.key].map(order).to_numpy(), kind="stable")]
        details = pd.concat([read_rows(d, self.detail_columns) for _, d in pairs], ignore_index=True)
        details = details[details[self.key].isin(set(rows[self.key]))]
        details = details.iloc[np.argsort(details[self.key].map(order).to_numpy(), kind="stable")]
        for table, path in ((details, self.detail_path), (rows, self.path)):
            with atomic_open(path, "w") as f:
                table.to_csv(f, index=False, lineterminator="\n")
        for pair in pairs[1:]:
            for path in pair:
                os.remove(path)
        return rows.reset_index(drop=True)


def check_settings(path, settings: dict) -> list[str]:
    """'KEY: was OLD, now NEW' for every setting that differs from the JSON file `path` (none if it is absent)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        before = json.load(f)
    return [f"{key}: was {before.get(key)!r}, now {value!r}" for key, value in settings.items()
            if before.get(key) != value]


def write_settings(path, settings: dict) -> None:
    atomic_write_json(settings, path)
