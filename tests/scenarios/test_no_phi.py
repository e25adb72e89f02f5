"""predict.py never lets a DICOM header's patient fields out: one torchrun run (2 gloo processes, so rank 1 has a
log of its own) over DICOM files whose headers carry a distinctive patient name, ID, birth date (one of them
invalid, which pydicom warns about quoting the value), address and other IDs; a loop is scored, a still skipped,
a truncated loop fails (its error and traceback are logged). None of these values may appear in stdout, stderr,
any file the run wrote (CSVs, logs, settings, --plot pictures, their PNG metadata) or any file name."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image

from conftest import REPO_ROOT, free_port, write_dicom, write_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Distinctive on purpose: none of these strings can appear in an output by chance.
PATIENT = {"PatientName": "Featherstonehaugh^Zebulon^Quincey", "PatientID": "PID-77342190",
           "PatientBirthDate": "19310417", "PatientAddress": "42 Marrowbone Lane, Kilkenny",
           "OtherPatientIDs": "MRN-0066613"}
INVALID_BIRTH_DATE = "19310229X"  # not a DA value: pydicom warns, quoting it
# every value and the parts a program could print on their own (a DICOM name is family^given^middle)
SECRETS = [*PATIENT.values(), INVALID_BIRTH_DATE, "Featherstonehaugh", "Zebulon", "Quincey", "77342190",
           "Marrowbone", "0066613", "1931-04-17", "17/04/1931", "04/17/1931"]
ARGS = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "1", "--clip_stride", "4", "--crop", "none",
        "--target_fps", "0", "--min_frames", "8", "--min_seconds", "0", "--device", "cpu", "--num_workers", "0"]


def write_exam(folder):
    """exam/: two scored loops (one per rank), a still (skipped) and a truncated loop (failed), file names
    without patient data; every header carries the patient fields."""
    rng = np.random.default_rng(3)
    loops = [rng.integers(0, 256, (12, 32, 32), dtype=np.uint8) for _ in range(3)]
    write_dicom(folder / "IM0001", loops[0], FrameTime=20, **PATIENT)
    write_dicom(folder / "IM0002", loops[1], FrameTime=20, **PATIENT)
    write_dicom(folder / "IM0003", loops[2][:1], FrameTime=20, **PATIENT)  # one frame: skipped
    write_dicom(folder / "IM0004", loops[2], FrameTime=20, pixel_bytes=loops[2].tobytes()[:3000],  # failed
                **PATIENT)
    # an invalid birth date, stored as it is (pydicom warns when it is set and when it is read)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning about the value written on purpose
        ds = pydicom.dcmread(folder / "IM0002")
        ds["PatientBirthDate"] = pydicom.DataElement(0x00100030, "DA", INVALID_BIRTH_DATE)
        ds.save_as(folder / "IM0002", enforce_file_format=True)
        stored = pydicom.dcmread(folder / "IM0002")
    assert (stored.PatientName, stored.PatientBirthDate) == (PATIENT["PatientName"], INVALID_BIRTH_DATE)


def test_patient_fields_reach_no_output_log_picture_or_console(tmp_path):
    exam, out = tmp_path / "exam", tmp_path / "out"
    exam.mkdir()
    write_exam(exam)
    checkpoint = write_tiny_checkpoint(tmp_path / "best.pth")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(free_port())]
    result = subprocess.run([*torchrun, "predict.py", "--pretrained_weights", str(checkpoint), *ARGS,
                             "--output", str(out / "ef.csv"), "--plot", str(out / "plots"), str(exam)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "always"})
    # exit 1: IM0004 failed (torchrun reports the failed worker); the run itself went through
    assert result.returncode == 1, result.stderr[-3000:]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    # the run wrote what we search: both ranks' logs, the CSVs, one picture per scored loop
    assert {"ef.csv", "ef.clips.csv", "ef.log", "ef.rank1.log", "ef.settings.json"} <= set(written), result.stderr[-3000:]
    assert sorted(p for p in written if p.startswith("plots/")) == ["plots/IM0001.png", "plots/IM0002.png"]
    rows = (out / "ef.csv").read_text()
    assert [line.split(",")[0].endswith(name) for line, name in
            zip(rows.splitlines()[1:], ["IM0001", "IM0002", "IM0003", "IM0004"])] == [True] * 4
    assert (",scored," in rows and ",skipped," in rows and ",failed," in rows), rows
    assert "IM0004" in (out / "ef.log").read_text() + (out / "ef.rank1.log").read_text()  # the failure is logged

    texts = {"stdout": result.stdout, "stderr": result.stderr, "file names": "\n".join(written)}
    for name in written:
        texts[name] = (out / name).read_bytes().decode("latin-1")  # bytes as they are, PNG chunks included
        if name.endswith(".png"):
            with Image.open(out / name) as picture:
                texts[name + " (metadata)"] = repr(picture.info) + repr(getattr(picture, "text", {}))
    leaks = [(secret, where) for secret in SECRETS for where, text in texts.items()
             if secret.lower() in text.lower()]
    assert leaks == []
