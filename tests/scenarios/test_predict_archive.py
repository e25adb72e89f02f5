"""predict.py over an echo archive: ~200 files in study folders laid out as a lab's DICOM export, mixing
generated cine loops (extension-less, one RLE-compressed, one JPEG-LS one without a decoder) with pydicom's
real vendor files (a JPEG-baseline YBR_FULL_422 ultrasound cine, single-frame ultrasound images, a 2-frame RLE
secondary capture, a structured report), generated single-frame images, AVIs and corrupt files.

One uninterrupted in-process run is the reference; a run SIGKILLed at a random row and resumed by two gloo
processes under torchrun must write the same CSVs byte for byte (rows, clips, studies; the distance columns
from a familiarity reference made beside the checkpoint from a few of the archive's loops). Its rows show the status rules
(scored / skipped / failed, exit 1 only for failures) and the identity columns; no patient name, ID or birth
date reaches any output or log. Clips: uniformer_tiny, 8 frames every frame, one clip per loop, 32x32 videos.
"""
import contextlib
import csv
import io
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, RLELossless, UltrasoundImageStorage, generate_uid

import predict
from conftest import REPO_ROOT, free_port, write_dicom, write_tiny_checkpoint
from scoring.familiarity import content_identity, reference_path, save_reference
from scoring import scorer
from scoring.scorer import embed_videos, load_scorer, video_clips
from scoring.rows import CSV_COLUMNS
from utils.script.cli import run_main
from utils.script.errors import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_STUDIES, CINES_PER_STUDY = 24, 4
PHI = {"PatientName": "Quokka^Wilhelmina", "PatientID": "PID-5550172", "PatientBirthDate": "19230817"}
REAL_PHI = ["Lestrade", "Last Name^First Name"]  # names in pydicom's files copied into the archive
ARGS = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "1", "--clip_stride", "100", "--crop", "none",
        "--target_fps", "0", "--min_frames", "8", "--min_seconds", "0", "--device", "cpu", "--num_workers", "0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "best.pth")


def single_frame(path, frame, **tags):
    """A one-image ultrasound object (US Image Storage, no NumberOfFrames), as scanners store stills."""
    write_dicom(path, frame[None], **tags)
    ds = pydicom.dcmread(path)
    del ds.NumberOfFrames
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.save_as(path, enforce_file_format=True)


def write_study(folder, k, loops):
    """STUDYk/SERIES1: 4 cine loops (8 frames, 32x32, 50 fps); SERIES2: a generated still and a real one;
    SR0001: a structured report; every other study an AVI, the others pydicom's RLE secondary capture."""
    study = {"StudyInstanceUID": generate_uid(), **PHI}
    series = study | {"SeriesInstanceUID": generate_uid()}
    for j in range(CINES_PER_STUDY):
        write_dicom(folder / "SERIES1" / f"IM{j:04d}", loops[(k + j) % len(loops)], FrameTime=20,
                    PixelSpacing=[0.3, 0.25], **series)
    single_frame(folder / "SERIES2" / "IM0001", loops[k % len(loops)][0], **study)
    shutil.copy(get_testdata_file("examples_rgb_color.dcm" if k % 2 else "examples_palette.dcm"),
                folder / "SERIES2" / "IM0002")
    shutil.copy(get_testdata_file("reportsi.dcm"), folder / "SR0001")
    if k % 2:
        writer = cv2.VideoWriter(str(folder / "loop.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 50, (32, 32))
        for frame in loops[(k + 1) % len(loops)]:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        writer.release()
    else:
        shutil.copy(get_testdata_file("SC_rgb_rle_2frame.dcm"), folder / "SERIES2" / "SC0001")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive") / "export"
    rng = np.random.default_rng(0)
    loops = [cv2.GaussianBlur(rng.integers(0, 256, (8, 32, 32), dtype=np.uint8), (5, 5), 0) for _ in range(8)]
    for k in range(N_STUDIES):
        folder = root / f"STUDY{k:03d}"
        for sub in ("SERIES1", "SERIES2"):
            (folder / sub).mkdir(parents=True)
        write_study(folder, k, loops)
    extra = root / "STUDY999"
    extra.mkdir()
    rle = write_dicom(extra / "RLE0001", loops[3], FrameTime=20, **PHI)
    ds = pydicom.dcmread(rle)
    ds.compress(RLELossless)
    ds.save_as(rle)
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), extra / "US0001")  # JPEG baseline, 30 frames
    write_dicom(extra / "JLS0001", np.zeros((8, 8, 8), np.uint8), transfer_syntax=JPEGLSLossless,
                pixel_bytes=encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"] * 8))
    (extra / "CUT0001").write_bytes((root / "STUDY000" / "SERIES1" / "IM0000").read_bytes()[:900])  # truncated
    (extra / "broken.avi").write_bytes(rng.bytes(3000))
    (extra / "noise.dcm").write_bytes(rng.bytes(3000))
    cv2.VideoWriter(str(extra / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 32)).release()
    write_dicom(extra / "FEW0001", loops[0][:5], FrameTime=20)  # 5 frames: fewer than --min_frames 8
    return root


@pytest.fixture(scope="module")
def familiar(archive, checkpoint):
    """A familiarity reference beside the checkpoint: 8 of the archive's cine loops as the training videos (EF 30,
    35, ..., 65), 4 others as the val videos; the AVIs and the vendor cine lie farther."""
    opt = predict.parse_option(["--pretrained_weights", str(checkpoint), *ARGS, "x"])
    model, regressor, _ = load_scorer(opt, torch.device("cpu"))
    paths = [str(archive / f"STUDY{k:03d}" / "SERIES1" / f"IM{j:04d}") for k in range(3) for j in range(4)]
    embeddings = [e.mean(axis=0) for _, _, e in embed_videos(opt, model, regressor, video_clips(opt, paths),
                                                              torch.device("cpu"), None)]
    meta = {"checkpoint": content_identity(checkpoint), "frames": 8, "frequency": 1}
    return save_reference(reference_path(checkpoint), embeddings[:8], np.arange(30, 70, 5), embeddings[8:], meta)


def forked_run(args):
    """predict.main(args) in a child process forked from this one (no second start-up and imports: the kill test
    stays cheap); its output goes nowhere and it never returns into pytest. -> its pid"""
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            predict.main(args)
        finally:
            os._exit(0)
    return pid


def run_in_process(args):
    """predict.main(args) -> (exit status, what it printed)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = predict.main(args)
    return status, printed.getvalue()


def outputs(csv_path):
    """(OUT.csv, OUT.clips.csv, OUT.studies.csv) as text."""
    return tuple(csv_path.with_name(csv_path.stem + end).read_text() for end in (".csv", ".clips.csv", ".studies.csv"))


@pytest.fixture(scope="module")
def reference(archive, checkpoint, familiar, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "ef.csv"
    start = time.perf_counter()
    status, printed = run_in_process(["--pretrained_weights", str(checkpoint), *ARGS, "--output", str(out),
                                      str(archive)])
    table = pd.read_csv(out, keep_default_na=False, dtype=str)
    return {"status": status, "out": out, "texts": outputs(out), "table": table, "printed": printed,
            "seconds": time.perf_counter() - start}


def by_name(table, *parts):
    rows = table[table["file"].map(lambda f: f.endswith(os.path.join(*parts)))]
    assert len(rows) == 1, parts
    return rows.iloc[0]


# ---------------------------------------------------------------- status rules, identity, PHI

def test_archive_rows_follow_the_status_rules(reference, archive):
    table = reference["table"]
    assert list(table.columns) == CSV_COLUMNS and len(table) == len(set(table["file"])) == 200
    assert table["file"].tolist() == sorted(table["file"])  # input order
    statuses = table["status"].value_counts().to_dict()
    loops = N_STUDIES * CINES_PER_STUDY + N_STUDIES // 2 + 2  # cines, AVIs, the RLE cine, the vendor cine
    assert statuses == {"scored": loops, "skipped": 200 - loops - 5, "failed": 5}, statuses
    assert reference["status"] == 1  # real failures only
    expected = {("STUDY000", "SERIES2", "IM0001"): ("skipped", "single frame: not a cine loop"),
                ("STUDY000", "SERIES2", "IM0002"): ("skipped", "ImageType anatomy OBSTETRICAL: not the heart"),
                ("STUDY000", "SERIES2", "SC0001"): ("skipped", "secondary capture (Secondary Capture Image Storage)"),
                ("STUDY000", "SR0001"): ("skipped", "no image (Basic Text SR Storage)"),
                ("STUDY999", "RLE0001"): ("scored", ""), ("STUDY999", "US0001"): ("scored", ""),
                ("STUDY999", "JLS0001"): ("failed", "JLS0001: "), ("STUDY999", "CUT0001"): ("failed", "CUT0001: "),
                ("STUDY999", "broken.avi"): ("failed", "cannot be opened as a video"),
                ("STUDY999", "noise.dcm"): ("failed", "not a readable DICOM file"),
                ("STUDY999", "empty.avi"): ("failed", "has no frames"),
                ("STUDY999", "FEW0001"): ("skipped", "5 frames: fewer than --min_frames 8")}
    for parts, (status, words) in expected.items():
        row = by_name(table, *parts)
        assert row["status"] == status and words in row["error"], (parts, row["status"], row["error"])
        assert (row["ef"] != "") == (status == "scored") and (row["n_clips"] != "0") == (status == "scored")
    assert f"200 files: {loops} scored ({loops + 1} clips), {200 - loops - 5} skipped, 5 failed" \
        in reference["printed"]
    assert "FAILED" in reference["printed"] and "Traceback" not in reference["printed"]


def test_clean_study_exits_0_with_skipped_objects(checkpoint, archive, tmp_path):
    status, printed = run_in_process(["--pretrained_weights", str(checkpoint), *ARGS, "--output",
                                      str(tmp_path / "ef.csv"), str(archive / "STUDY000")])
    assert status == 0 and "8 files: 4 scored (4 clips), 4 skipped, 0 failed" in printed


def test_dicom_rows_carry_their_study_and_series(reference, archive):
    table = reference["table"]
    first = by_name(table, "STUDY000", "SERIES1", "IM0000")
    header = pydicom.dcmread(archive / "STUDY000" / "SERIES1" / "IM0000", stop_before_pixels=True)
    assert (first["study_uid"], first["series_uid"], first["sop_uid"]) == \
        (header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID)
    assert (first["frame_time_ms"], first["pixel_spacing_x_mm"], first["pixel_spacing_y_mm"]) == ("20", "0.25", "0.3")
    same_study = table[table["file"].str.contains(f"STUDY000{os.sep}")]
    generated = same_study[same_study["file"].str.contains("SERIES1|SERIES2.IM0001")]
    assert generated["study_uid"].nunique() == 1 and len(generated) == 5
    vendor = by_name(table, "STUDY999", "US0001")  # SonoSite: 33.333 ms frames, calibration in the US region
    assert (vendor["frame_time_ms"], vendor["pixel_spacing_x_mm"]) == ("33.333", "0.510497")
    assert vendor["study_uid"] == "1.2.840.114340.3.8251017118051.1.20160503.120850.2171"
    assert by_name(table, "STUDY001", "loop.avi")["study_uid"] == ""


def test_familiarity_columns_and_one_ef_per_study(reference, familiar, archive):
    table = reference["table"]
    scored = table["status"] == "scored"
    assert (table.loc[~scored, ["distance", "unfamiliar", "ef_knn"]] == "").all().all()
    distance = table.loc[scored, "distance"].astype(float)
    flagged = table.loc[scored, "unfamiliar"]
    assert set(flagged) == {"0", "1"} and (flagged == "1").tolist() == (distance > familiar.threshold).tolist()
    assert table.loc[scored, "ef_knn"].astype(float).between(30, 65).all()  # means of the reference's EFs
    assert f"familiarity: {familiar.path} (8 train videos, k 5;" in reference["printed"]
    # the study of STUDY000's loops, summed up independently of scoring.studies
    uid = by_name(table, "STUDY000", "SERIES1", "IM0000")["study_uid"]
    members = table[table["study_uid"] == uid]
    kept = members[(members["status"] == "scored") & (members["unfamiliar"] == "0")]["ef"].astype(float)
    studies = pd.read_csv(io.StringIO(reference["texts"][2]), keep_default_na=False, dtype=str).set_index("study")
    row = studies.loc[uid]
    # its 4 loops and still, and STUDY999's truncated copy of one of its loops (the header is whole)
    assert (row["grouped_by"], row["files"], row["scored"], row["skipped"], row["failed"], row["skip_reasons"]) == \
        ("study_uid", "6", "4", "1", "1", "single frame: 1")
    assert (int(row["unfamiliar"]), int(row["ef_n"])) == (4 - len(kept), len(kept))
    if len(kept):
        assert float(row["ef_mean"]) == pytest.approx(kept.mean(), abs=1e-5)
    folder = studies.loc[str(archive / "STUDY999")]  # its files without a study UID: grouped by their folder
    assert folder["grouped_by"] == "folder" and folder["failed"] == "4"  # the 5 failures but CUT0001


def test_no_patient_data_in_outputs_or_logs(reference):
    stem = str(reference["out"])[:-len(".csv")]
    texts = [*reference["texts"], reference["printed"],
             *(open(stem + end).read() for end in (".log", ".settings.json"))]
    for value in [*PHI.values(), *REAL_PHI, "Quokka", "Wilhelmina"]:
        assert not any(value in text for text in texts), value


# ---------------------------------------------------------------- kill, resume, torchrun

@pytest.mark.slow  # two processes / servers: .ci/run runs it after the main suite
def test_sigkilled_run_resumed_by_two_torchrun_processes_writes_the_one_process_csv(reference, archive,
                                                                                      checkpoint, tmp_path):
    """A run SIGKILLed at a random row leaves complete rows only; `--resume` under torchrun (2 gloo processes)
    scores the rest, each rank streaming its part, and rank 0 merges: the CSVs of one uninterrupted process."""
    out = tmp_path / "ef.csv"
    command = ["predict.py", "--pretrained_weights", str(checkpoint), *ARGS, "--output", str(out), str(archive)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kill_after = random.randint(20, 150)  # rows written before the SIGKILL
    pid = forked_run(command[1:])
    deadline = time.time() + 120
    while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.time() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") > kill_after:
            break
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    partial = out.read_text()
    rows = list(csv.reader(io.StringIO(partial)))
    assert partial.endswith("\n") and all(len(row) == len(CSV_COLUMNS) for row in rows), kill_after
    assert kill_after <= len(rows) - 1 < 200, (kill_after, len(rows))  # killed part-way, complete rows only

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port())]
    result = subprocess.run([*torchrun, *command, "--resume"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == reference["status"], result.stderr[-3000:]  # rank 0's: a file failed
    assert outputs(out) == reference["texts"], kill_after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ef.clips.csv", "ef.csv", "ef.log", "ef.rank1.log",
                                                           "ef.settings.json", "ef.studies.csv"]
    assert f"--resume: {len(rows) - 1} file(s) already done, {201 - len(rows)} left" in result.stdout
    left = 201 - len(rows)  # rank 1 scored every other file left, in its own stream
    assert f"[{left // 2}/{left // 2}] " in (tmp_path / "ef.rank1.log").read_text()


def test_ctrl_c_says_how_many_are_done_and_how_to_resume(archive, checkpoint, tmp_path, monkeypatch, capsys):
    csv_row, calls = scorer.csv_row, []

    def interrupted_after_five(item, clip_ef):
        calls.append(item["path"])
        if len(calls) == 6:
            raise KeyboardInterrupt
        return csv_row(item, clip_ef)

    monkeypatch.setattr(scorer, "csv_row", interrupted_after_five)  # the row of each file, as it finishes
    out = tmp_path / "ef.csv"
    args = ["--pretrained_weights", str(checkpoint), *ARGS, "--output", str(out), str(archive / "STUDY001")]
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: predict.main(args))
    assert stop.value.code == 130
    assert f"interrupted: 5 of 8 files done, kept in {out}; rerun the same command with --resume" \
        in capsys.readouterr().err
    assert len(pd.read_csv(out)) == 5


def test_resume_scores_changed_new_and_failed_files_again(archive, checkpoint, tmp_path):
    study = shutil.copytree(archive / "STUDY001", tmp_path / "STUDY001")
    (study / "broken.avi").write_bytes(b"not a video")
    out = tmp_path / "out" / "ef.csv"
    args = ["--pretrained_weights", str(checkpoint), *ARGS, "--output", str(out), str(study)]
    assert run_in_process(args)[0] == 1
    first = pd.read_csv(out, keep_default_na=False, dtype=str).set_index("file")
    changed = study / "SERIES1" / "IM0001"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))  # same size, touched
    shutil.copy(study / "SERIES1" / "IM0000", study / "SERIES1" / "IM0009")  # a new file
    status, printed = run_in_process([*args, "--resume"])
    # 9 rows before; the touched file and the failed one again, and the new one: 7 kept, 3 scored
    assert status == 1 and "--resume: 7 file(s) already done, 3 left" in printed
    table = pd.read_csv(out, keep_default_na=False, dtype=str).set_index("file")
    assert len(table) == 10 and table.index.tolist() == sorted(table.index)
    assert table.loc[str(changed), "file_mtime_ns"] == str(changed.stat().st_mtime_ns)
    assert table.loc[str(changed), "ef"] == first.loc[str(changed), "ef"]  # same pixels, same EF
    with pytest.raises(BadInputError, match=r"--resume: .*ef.csv was scored with other settings \(frequency: "
                                            r"was 1, now 2\); rerun with the same options"):
        predict.main([*args, "--resume", "--frequency", "2"])


# ---------------------------------------------------------------- the README

def test_readme_archive_commands_parse():
    """The README's 'Score an archive' commands that spell their arguments out go through predict's parser."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("## Score an archive", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.replace("\\\n", " ").splitlines()
                if "predict.py" in line and "same arguments" not in line]
    assert len(commands) == 2 and commands[1].startswith("torchrun --nproc_per_node 8 predict.py")
    for command in commands:
        words = shlex.split(command)
        opt = predict.parse_option(words[words.index("predict.py") + 1:])
        # no --model: the checkpoint says it (issue 30)
        assert (opt.output, opt.amp, opt.model, opt.inputs) == ("results/ef.csv", "bf16", None, ["/data/echo_export"])
