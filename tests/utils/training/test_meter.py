"""The epoch meter measures and writes into nothing: what a resumed epoch continues from, its line and summary."""
from utils.training.meter import EpochMeter


def test_meter_counts_continues_and_says_where():
    done = {"steps": 2, "clips": 8, "data_wait": 0.0, "seconds": 1.0, "sums": {"L1": 4.0}}
    meter = EpochMeter(3, [[1], [2], [3]], 1e-3, total=5, done=done, show=False)
    for _ in meter:
        meter.update(clips=4, L1=1.0)
    assert (meter.steps, meter.clips, meter.average("L1")) == (5, 20, 7.0 / 5)
    assert meter.where() == "step 5/5" and meter.line().startswith("Train [3][5/5] L1 1 (avg 1.4) lr 1.00e-03 |")
    assert meter.position() == {"epoch": 3, "step": 5, "steps": 5, "meter": meter.state()}
    assert not meter.every(5) and not meter.every(0)  # the epoch's end is saved whole, not part-way
    assert meter.summary()["steps"] == 5
