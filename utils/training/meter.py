"""One training epoch's numbers: loss averages, clips/s, the share of time spent waiting for data, the ETA.

The meter iterates the loader and measures; it writes into nothing. A run stopped part-way goes on with the
numbers it saved (`state()`)."""
import time

from tqdm import tqdm

from utils.engine.loaders import batches


def duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class EpochMeter:
    """Iterate it for the epoch's batches; `update(clips, **losses)` once per step.

    `total`: the epoch's steps; `done`: what `state()` returned when the run stopped part-way (the loader then
    yields only the steps left)."""

    def __init__(self, epoch, loader, lr, total, done=None, show=True):
        self.epoch, self.loader, self.lr, self.total, self.show = epoch, loader, lr, total, show
        done = done or {}
        self.steps, self.clips = done.get("steps", 0), done.get("clips", 0)
        self.data_wait, self.seconds = done.get("data_wait", 0.0), done.get("seconds", 0.0)
        self.sums = dict(done.get("sums", {}))
        self.losses = {}
        self.step = self.steps  # the step in progress while the loop body runs, 1-based as in the log lines
        self._start = time.perf_counter() - self.seconds

    def state(self):
        return {"steps": self.steps, "clips": self.clips, "data_wait": self.data_wait, "seconds": self.seconds,
                "sums": dict(self.sums)}

    def position(self):
        """Where the epoch is, as last.pth keeps it for a resume in the middle of the epoch."""
        return {"epoch": self.epoch, "step": self.steps, "steps": self.total, "meter": self.state()}

    def where(self):
        return f"step {self.step}/{self.total}"

    def __len__(self):
        return self.total

    def __iter__(self):
        bar = tqdm(total=self.total, initial=self.steps, desc=f"epoch {self.epoch}", leave=False,
                   dynamic_ncols=True, disable=None if self.show else True)
        waited_from = time.perf_counter()
        self._start = waited_from - self.seconds  # a resumed epoch goes on with its clock
        try:
            for batch in batches(self.loader):
                self.data_wait += time.perf_counter() - waited_from
                self.step = self.steps + 1
                yield batch
                bar.update(1)
                bar.set_postfix_str(f"{self.clips_per_s:.1f} clips/s", refresh=False)
                waited_from = time.perf_counter()
        finally:
            bar.close()
        self.seconds = time.perf_counter() - self._start

    @property
    def clips_per_s(self):
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    @property
    def data_share(self):
        return self.data_wait / self.seconds if self.seconds > 0 else 0.0

    def average(self, name):
        return self.sums[name] / max(self.steps, 1)

    def update(self, clips, **losses):
        """Record one finished step: `clips` seen and its loss values (Python floats)."""
        self.steps += 1
        self.clips += clips
        self.seconds = time.perf_counter() - self._start
        self.losses = losses
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value

    def every(self, steps):
        """Whether the step just done is a multiple of `steps` (0: never) and not the epoch's last."""
        return bool(steps) and self.steps % steps == 0 and self.steps < self.total

    def line(self):
        """The log line of the step just done."""
        values = " ".join(f"{name} {value:.4g} (avg {self.average(name):.4g})" for name, value in self.losses.items())
        left = (self.total - self.steps) * self.seconds / self.steps
        return (f"Train [{self.epoch}][{self.steps}/{self.total}] {values} lr {self.lr:.2e} | "
                f"{self.clips_per_s:.1f} clips/s, data wait {100 * self.data_share:.0f}%, epoch ETA {duration(left)}")

    def summary(self):
        return {"epoch": self.epoch, "steps": self.steps, "clips": self.clips, "seconds": round(self.seconds, 3),
                "data_wait_seconds": round(self.data_wait, 3), "clips_per_s": round(self.clips_per_s, 3)}
