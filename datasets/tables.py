"""Reading the user's CSV files: every way pandas can fail on one (empty, ragged rows, a wrong encoding,
unreadable) becomes one line that names the file."""
from __future__ import annotations

import os

import pandas as pd

from utils.script.errors import BadInputError, one_line


def read_csv_file(path: str | os.PathLike, expected: str = "", **read_csv_args) -> pd.DataFrame:
    """`pd.read_csv(path, **read_csv_args)`, failing with a BadInputError naming `path`; `expected` (e.g.
    "a CSV with header 'file,label'") is added to the message."""
    hint = f" (expected {expected})" if expected else ""
    try:
        return pd.read_csv(path, **read_csv_args)
    except pd.errors.EmptyDataError:
        raise BadInputError(f"{path} is empty{hint}") from None
    except (ValueError, OSError) as e:  # ParserError (ragged rows) and UnicodeDecodeError are ValueErrors
        raise BadInputError(f"cannot read {path}{hint}: {one_line(e)}") from None
