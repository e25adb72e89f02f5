"""Small text helpers the readers share: EchoNet file names, header values and one-line error messages."""
from __future__ import annotations


def with_avi(name) -> str:
    """An EchoNet video name as FileList.csv's readers key it: stripped, '.avi' added when missing."""
    name = str(name).strip()
    return name if name.lower().endswith(".avi") else name + ".avi"


def first_few(items, k: int = 5) -> str:
    """The first `k` items, comma separated, with ', ...' when there are more (for an error message)."""
    items = [str(item) for item in items]
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def one_line(error: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__
