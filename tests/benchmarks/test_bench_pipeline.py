"""benchmarks/bench_pipeline.py and its arithmetic (benchmarks/pipeline_figures.py): the projection, reading the
scripts' timing files, option defaults, and (when the scripts write their timing files) an end-to-end --quick run."""
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_pipeline as bp  # noqa: E402
import pipeline_figures as pf  # noqa: E402

# Seconds per clip of every phase (cache_fill: per video), chosen so the products are easy to check by hand.
RATES = {"cache_fill": 0.01, "stage1_train": 0.1, "stage1_val": 0.02, "stage1_report": 0.03, "stage2_train": 0.05,
         "stage2_val": 0.02, "stage2_report": 0.04, "test": 0.5}


def test_clip_counts_of_the_paper_schedule():
    assert pf.clip_counts() == {
        "cache_fill": 10030,             # 7465 + 1288 + 1277 videos decoded once
        "stage1_train": 388180,          # 26 epochs x 7465 videos x 2 clips
        "stage1_val": 33488,             # 26 x 1288
        "stage1_report": 10030,          # test + val + train, 1 clip each
        "stage2_train": 37325,           # 5 x 7465
        "stage2_val": 6440,              # 5 x 1288
        "stage2_report": 10030,
        "test": 3831,                    # 1277 x 3 clips
    }


def test_projection_multiplies_counts_by_seconds_per_clip():
    projection = pf.project(RATES)
    phases = projection["phases"]
    assert phases["cache_fill"] == pytest.approx(100.3)
    assert phases["stage1_train"] == pytest.approx(38818.0)
    assert phases["stage1_val"] == pytest.approx(669.76)
    assert phases["stage1_report"] == pytest.approx(300.9)
    assert phases["stage2_train"] == pytest.approx(1866.25)
    assert phases["stage2_val"] == pytest.approx(128.8)
    assert phases["stage2_report"] == pytest.approx(401.2)
    assert phases["test"] == pytest.approx(1915.5)
    assert projection["stage1"] == pytest.approx(100.3 + 38818.0 + 669.76 + 300.9)  # 39888.96
    assert projection["stage2"] == pytest.approx(1866.25 + 128.8 + 401.2)         # 2396.25
    assert projection["test"] == pytest.approx(1915.5)
    assert projection["total"] == pytest.approx(39888.96 + 2396.25 + 1915.5)      # 44200.71


def test_projection_of_another_schedule_and_a_missing_phase():
    small = pf.Schedule(train_videos=10, val_videos=2, test_videos=3, stage1_epochs=2, stage2_epochs=1)
    projection = pf.project(dict(RATES, stage2_val=None), small)
    assert projection["phases"]["stage1_train"] == pytest.approx(2 * 10 * 2 * 0.1)
    assert projection["phases"]["test"] == pytest.approx(3 * 3 * 0.5)
    assert projection["phases"]["stage2_val"] is None
    assert projection["stage2"] is None and projection["total"] is None  # unknown, not silently 0
    assert projection["stage1"] == pytest.approx(15 * 0.01 + 4.0 + 2 * 2 * 0.02 + 15 * 0.03)


def timing(epochs, validation, report=None, peak=None):
    return {"epochs": epochs, "validation": validation, "final_report": report, "peak_gpu_memory_gib": peak}


def test_stage_figures_use_the_epochs_after_the_first():
    epochs = [{"epoch": 0, "steps": 2, "clips": 64, "seconds": 10.0, "data_wait_seconds": 5.0, "clips_per_s": 6.4},
              {"epoch": 1, "steps": 2, "clips": 64, "seconds": 2.0, "data_wait_seconds": 0.5, "clips_per_s": 32},
              {"epoch": 2, "steps": 2, "clips": 64, "seconds": 2.0, "data_wait_seconds": 0.3, "clips_per_s": 32}]
    validation = [{"epoch": 0, "clips": 10, "seconds": 5.0}, {"epoch": 1, "clips": 10, "seconds": 1.0},
                  {"epoch": 2, "clips": 10, "seconds": 1.0}]
    figures, missing = pf.stage_figures(timing(epochs, validation, {"clips": 40, "seconds": 2.0}, 12.5), "stage1")
    assert missing == []
    assert figures == pytest.approx({"stage1_train": 4.0 / 128, "stage1_val": 2.0 / 20, "stage1_report": 0.05,
                                     "stage1_wait_share": 0.8 / 4.0, "stage1_peak_gib": 12.5})


def test_stage_figures_of_a_single_epoch_and_missing_fields():
    figures, missing = pf.stage_figures(timing([{"clips": 8, "seconds": 4.0}], [], None), "stage2")
    assert figures["stage2_train"] == pytest.approx(0.5)
    assert figures["stage2_val"] is None and figures["stage2_report"] is None
    assert figures["stage2_wait_share"] is None and figures["stage2_peak_gib"] is None
    assert missing == ["stage2 validation: no measurement", "stage2 final report: no measurement",
                       "stage2 training epochs: no data_wait_seconds"]
    figures, missing = pf.stage_figures(None, "stage1")
    assert all(value is None for value in figures.values()) and "no timing.json" in missing[0]


def test_test_figures():
    figures, missing = pf.test_figures({"timing": {"videos": 4, "clips": 12, "seconds": 3.0, "clips_per_s": 4.0}})
    assert figures == {"test": 0.25} and missing == []
    figures, missing = pf.test_figures({"mean_of_clips": {}})
    assert figures == {"test": None} and "no 'timing'" in missing[0]


def test_summary_turns_seconds_per_clip_into_rates_and_hours():
    figures = {name: RATES[name] for name in pf.PHASES if name != "cache_fill"}
    figures.update(stage1_wait_share=0.25, stage2_wait_share=None, stage1_peak_gib=10.0)
    summary = bp.summarise({"figures": figures}, cache_seconds_per_video=0.01)
    shown = summary["shown"]
    assert shown["stage-1 training clips/s"] == pytest.approx(10.0)
    assert shown["three-clip test clips/s"] == pytest.approx(2.0)
    assert shown["data-loader wait, stage 1 (%)"] == pytest.approx(25.0)
    assert shown["data-loader wait, stage 2 (%)"] is None
    assert shown["projected whole pipeline (h)"] == pytest.approx(44200.71 / 3600)
    assert bp.ratio(5.0, 2.0) == 2.5 and bp.ratio(None, 2.0) is None and bp.ratio(1.0, 0.0) is None


def test_argument_defaults_for_gpu_cpu_and_quick():
    gpu = bp.parse_args([], gpu=True)
    assert (gpu.videos, gpu.model, gpu.frames, gpu.frequency, gpu.batch_size, gpu.num_workers) == \
        (400, "uniformer_small", 36, 4, 16, 8)
    assert gpu.best_num_workers == 8 and gpu.epochs == 0 and gpu.json is None
    cpu = bp.parse_args(["--videos", "30", "--json", "out.json", "--best_num_workers", "12"], gpu=False)
    assert (cpu.videos, cpu.model, cpu.frames, cpu.best_num_workers, cpu.json) == \
        (30, "uniformer_tiny", 8, 12, "out.json")
    quick = bp.parse_args(["--quick"], gpu=True)  # --quick is CI-sized even on a GPU
    assert (quick.videos, quick.model, quick.batch_size) == (12, "uniformer_tiny", 2)
    with pytest.raises(SystemExit):
        bp.parse_args(["--videos", "5"])


def test_configurations_drop_flags_the_scripts_do_not_know(tmp_path):
    opt = bp.parse_args(["--best_extra=--compile --channels_last"], gpu=True)  # "=": the value starts with --
    every = {"--depthwise", "--channels_last", "--cache_dir", "--compile", "--amp"}
    configs = bp.config_flags(opt, tmp_path, every)
    assert configs["released"] == (["--amp", "none", "--num_workers", "8"],) * 2
    train, test = configs["best"]
    assert train == ["--amp", "bf16", "--num_workers", "8", "--cache_dir", str(tmp_path), "--depthwise", "auto",
                     "--compile", "--channels_last"]
    assert test == train[:-2] + ["--channels_last"]  # the test script does not compile
    train, _ = bp.config_flags(opt, tmp_path, every - {"--depthwise"})["best"]
    assert "--depthwise" not in train and "auto" not in train and "--channels_last" in train
    opt = bp.parse_args(["--best_depthwise", "conv2d"], gpu=True)
    assert bp.config_flags(opt, tmp_path, every)["best"][0][-2:] == ["--depthwise", "conv2d"]


def test_prepare_dataset_never_deletes_other_data(tmp_path):
    real = tmp_path / "echonet"
    (real / "Videos").mkdir(parents=True)
    (real / "FileList.csv").write_text("FileName,EF,Split\n0X1002E8FBACD08477,78.5,TRAIN\n")
    assert "as it is (1 videos)" in bp.prepare_dataset(real, videos=12, processes=1)
    assert (real / "FileList.csv").exists() and (real / "Videos").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="holds other files"):
        bp.prepare_dataset(other, videos=12, processes=1)
    assert (other / "notes.txt").exists()


@pytest.mark.slow  # the three scripts twice, ~22 s
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "pipeline.json"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_pipeline.py"), "--quick",
                             "--json", str(out), "--work_dir", str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "best/released" in result.stdout and "CPU run" in result.stdout
    report = json.loads(out.read_text())
    assert report["missing"] == []
    for name in ("released", "best"):
        config = report["configs"][name]
        assert config["errors"] == []
        assert all(config["seconds_per_clip"][phase] > 0 for phase in pf.PHASES if phase != "cache_fill")
        assert config["projected_seconds"]["total"] > 0
    assert report["configs"]["best"]["flags"][:2] == ["--amp", "bf16"]
    assert report["ratios_best_over_released"]["stage-1 training clips/s"] > 0
