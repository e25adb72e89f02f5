"""benchmarks/bench_transfer.py times the heads with transfer_learning.py's defaults, written out in the
benchmark (benchmarks import packages, not scripts): they must stay equal."""
import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_transfer  # noqa: E402
import transfer_learning  # noqa: E402


def test_head_settings_are_the_scripts_defaults():
    opt = transfer_learning.parse_option(["--dataset", "camus", "--data_folder", ".", "--pretrained_weights", "none"])
    assert {key: getattr(opt, key) for key in bench_transfer.HEAD_DEFAULTS} == bench_transfer.HEAD_DEFAULTS
