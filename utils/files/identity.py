"""A file's identity for caches and resumed runs: its size and modification time change whenever it is
replaced or touched, so a cache entry or a scored row keyed by them is never reused for a changed file."""
import os


def file_stamp(path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of `path`."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns
