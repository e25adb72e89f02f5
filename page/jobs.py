"""The page's job folders (CSV, Grad-CAM videos), each owned by the browser session that made it.

A session keeps at most `per_session` folders (its own oldest goes first); all sessions together at most
`total`: a new job beyond it is refused (`PageBusyError`), never made room for by removing another session's
work. A session's folders go when its tab closes (Gradio's unload event), when its page state is dropped, or
`ttl_s` after its last job or view.
"""
import shutil
import threading
import time
import uuid
from pathlib import Path

from utils.script.errors import UserError


class PageBusyError(UserError):
    """Every place for a job is taken by other sessions."""


class SessionJobs:
    def __init__(self, root, per_session: int = 2, total: int = 16, ttl_s: float = 3600.0, clock=time.monotonic):
        self.root = Path(root)
        self.per_session, self.total, self.ttl_s, self.clock = per_session, total, ttl_s, clock
        self.folders = {}  # session -> [folder, ...], oldest first
        self.last_used = {}  # session -> clock()
        self.lock = threading.Lock()  # handlers and the unload event run in several threads

    def new(self, session: str) -> str:
        """A fresh folder for a job of `session`; PageBusyError when all `total` are held by other sessions."""
        with self.lock:
            self._expire()
            mine = self.folders.setdefault(session, [])
            while len(mine) >= self.per_session:
                shutil.rmtree(mine.pop(0), ignore_errors=True)
            if sum(map(len, self.folders.values())) >= self.total:
                raise PageBusyError(f"the page is busy: it holds the results of {self.total} jobs of other users "
                                    f"now; try again in a few minutes")
            folder = self.root / uuid.uuid4().hex
            folder.mkdir(parents=True)
            mine.append(folder)
            self.last_used[session] = self.clock()
            return str(folder)

    def holds(self, session: str, folder) -> bool:
        """True while `folder` is a live job of `session` (it is then used: its time to live starts again)."""
        with self.lock:
            self._expire()
            held = Path(folder) in self.folders.get(session, [])
            if held:
                self.last_used[session] = self.clock()
            return held

    def written(self, session: str, folder) -> bool:
        """Call after writing into `folder`: True while it is a live job of `session`; else the write made the
        folder again after its session closed (atomic writes create their folder), and it is removed now."""
        with self.lock:
            held = Path(folder) in self.folders.get(session, [])
        if not held:
            shutil.rmtree(folder, ignore_errors=True)
        return held

    def release(self, session: str) -> None:
        """Remove every folder of `session` (its tab closed, its state dropped)."""
        with self.lock:
            self._release(session)

    def count(self) -> int:
        with self.lock:
            return sum(map(len, self.folders.values()))

    def _release(self, session):
        for folder in self.folders.pop(session, []):
            shutil.rmtree(folder, ignore_errors=True)
        self.last_used.pop(session, None)

    def _expire(self):
        now = self.clock()
        for session in [s for s, used in self.last_used.items() if now - used > self.ttl_s]:
            self._release(session)
