"""page.jobs: a session's folders are its own: its own oldest goes at its bound, a full page refuses a new job
instead of removing another session's, and a session's folders go when it closes or after its time to live."""
from pathlib import Path

import pytest

from page.jobs import PageBusyError, SessionJobs


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_sessions_keep_their_own_folders_and_a_full_page_refuses(tmp_path):
    jobs = SessionJobs(tmp_path / "jobs", per_session=2, total=3, ttl_s=60, clock=Clock())
    a = jobs.new("a")
    b = [jobs.new("b") for _ in range(4)]  # b's own oldest go; a's stays
    assert jobs.holds("a", a) and [jobs.holds("b", f) for f in b] == [False, False, True, True]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == sorted(p.rsplit("/", 1)[1] for p in [a] + b[2:])
    assert not jobs.holds("b", a)  # a folder is only its own session's
    with pytest.raises(PageBusyError, match="busy: it holds the results of 3 jobs of other users"):
        jobs.new("c")
    assert jobs.count() == 3 and jobs.holds("a", a)
    jobs.release("b")
    assert jobs.new("c") and jobs.count() == 2 and sorted(jobs.folders) == ["a", "c"]


def test_a_session_unused_for_its_time_to_live_is_removed(tmp_path):
    clock = Clock()
    jobs = SessionJobs(tmp_path, per_session=2, total=2, ttl_s=60, clock=clock)
    a, b = jobs.new("a"), jobs.new("b")
    clock.now = 50
    assert jobs.holds("a", a)  # a view: a's time to live starts again
    clock.now = 100
    assert jobs.new("c") and not jobs.holds("b", b) and jobs.holds("a", a)  # b expired, so c fits
    assert sorted(jobs.folders) == ["a", "c"] and not (tmp_path / b.rsplit("/", 1)[1]).exists()


def test_a_write_after_the_session_closed_leaves_no_folder(tmp_path):
    """A Grad-CAM finished after its tab closed: the atomic write made the folder again; it goes at once."""
    jobs = SessionJobs(tmp_path)
    folder = Path(jobs.new("a"))
    (folder / "cam_0.webm").write_bytes(b"x")
    assert jobs.written("a", folder) and (folder / "cam_0.webm").is_file()  # a live job keeps its files
    jobs.release("a")
    assert not folder.exists()
    folder.mkdir()
    (folder / "cam_4.webm").write_bytes(b"late")  # what the late write did
    assert not jobs.written("a", folder) and not folder.exists()
