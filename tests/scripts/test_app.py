"""app.py, the web page, driven in a real headless Chromium (Selenium with Debian's chromium-driver).

One server for the module (a tiny seeded UniFormer on 8-frame clips, a temporary folder of its own as TMPDIR)
and one browser. Uploads: a 640x480 MP4 screen recording with text and a border, a DICOM that carries a patient
name, a generated 112x112 EchoNet-format AVI (a test-split video of the synthetic folder) and a real EchoNet video
when ../shared holds the samples; the page's EF, the CSV it offers and the crop
must be predict.py's for the same files and options, the familiarity columns too (a reference made here beside
the checkpoint: its ef_knn and flag shown beside the EF). Then bad files (corrupt, a still image DICOM, a text
file), each its one line on the page, and the example button right after; the server stops on SIGTERM with no
file left and no lookup or connection off the machine. These are skipped only without a browser; the options,
the EF ranges and the page's rows against predict.py's (with a reference and without) are tested without one.
"""
import csv
import html
import importlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch

import app
import predict
from conftest import REPO_ROOT, SAMPLE_VIDEOS, free_port, write_dicom, write_screen_recording
from models import get_feature_extractor, get_shallow_mlp_head
from page.display import NO_REFERENCE, UNFAMILIAR
from page.jobs import SessionJobs
from scoring import reference as reference_command
from scoring.familiarity import load_reference, reference_path
from scoring.rows import CSV_COLUMNS
from utils.files.checkpoint import save_best
from utils.script.errors import BadInputError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_browser = pytest.mark.skipif(webdriver is None or not (CHROMIUM and DRIVER),
                                   reason="no browser: Selenium, chromium and chromedriver are needed (.ci/run "
                                          "installs Debian's chromium and chromium-driver; pip install selenium)")
MODEL = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--device", "cpu"]
PATIENT = "DOE^JANE"
# runs app.py as `python app.py ...` would, noting every name looked up or address connected to off this machine
WATCHED = """
import runpy, socket, sys
LOCAL, seen = ("127.0.0.1", "::1", "localhost"), open(sys.argv.pop(1), "a", buffering=1)
def watch(original, name):
    def call(self_or_host, *args, **kwargs):
        target = args[0] if name == "connect" else self_or_host
        host = target[0] if isinstance(target, tuple) else target
        if isinstance(host, str) and host not in LOCAL and "/" not in host:
            seen.write(f"{name} {target}\\n")
        return original(self_or_host, *args, **kwargs)
    return call
socket.socket.connect = watch(socket.socket.connect, "connect")
socket.getaddrinfo = watch(socket.getaddrinfo, "getaddrinfo")
sys.argv.pop(0)
runpy.run_path(sys.argv[0], run_name="__main__")
"""
WAIT = 120  # seconds: the shared 2-core machine can be slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny seeded UniFormer; its last layer scaled so that different clips get EFs points apart."""
    torch.manual_seed(1)
    encoder = get_feature_extractor("uniformer_tiny")
    head = get_shallow_mlp_head(encoder.head.in_features)
    head[-1].weight.data *= 100
    path = tmp_path_factory.mktemp("weights") / "best.pth"
    save_best(path, encoder, head, 1, 0.0)
    return path


@pytest.fixture(scope="module")
def reference(checkpoint, echonet):
    """The checkpoint's familiarity reference, beside it (python -m scoring.reference on the synthetic EchoNet
    folder, clips as MODEL's), where the page and predict.py look by default."""
    assert reference_command.main(["--pretrained_weights", str(checkpoint), "--data_folder", str(echonet), *MODEL,
                                   "--clip_stride", "64", "--num_workers", "0"]) == 0
    return load_reference(reference_path(checkpoint))


@pytest.fixture(scope="module")
def server(checkpoint, reference, tmp_path_factory):
    """app.py on a free port, started here and waited for by `open_page` (it starts while the rest is set up);
    its TMPDIR is a folder of the test's, to see it left empty; the checkpoint's reference beside it."""
    root = tmp_path_factory.mktemp("app")
    scratch = root / "tmp"
    scratch.mkdir()
    port = free_port()
    log = open(root / "app.log", "w")
    process = subprocess.Popen([sys.executable, "-c", WATCHED, str(root / "outside.txt"), "app.py",
                                "--pretrained_weights", str(checkpoint), *MODEL, "--port", str(port)],
                               cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1"})
    yield {"url": f"http://127.0.0.1:{port}/", "process": process, "log": root / "app.log", "scratch": scratch,
           "outside": root / "outside.txt"}
    if process.poll() is None:
        process.kill()
    log.close()


def open_page(browser, server):
    deadline = time.time() + WAIT
    while True:
        try:
            urllib.request.urlopen(server["url"], timeout=2).close()
            break
        except OSError:
            if server["process"].poll() is not None or time.time() > deadline:
                server["process"].kill()
                pytest.fail(f"app.py did not start: {server['log'].read_text()[-3000:]}")
            time.sleep(0.3)
    browser.get(server["url"])


def start_browser(profile, *flags):
    """Headless Chromium with its own profile folder; `flags` added (e.g. to accept a test's certificate)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1700", f"--user-data-dir={profile}", *flags):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_browser(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def videos(echonet, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    screen, _ = write_screen_recording(folder)
    grey = np.random.default_rng(2).integers(0, 256, (40, 112, 112), dtype=np.uint8)  # 0.8 s at 50 fps
    patient = write_dicom(folder / "patient.dcm", grey, FrameTime=20, PatientName=PATIENT, PatientID="12345")
    # 112x112 EchoNet AVIs: a generated one always (the twin of the real sample, which joins where ../shared has it)
    listed = pd.read_csv(echonet / "FileList.csv")
    generated = echonet / "Videos" / f"{listed.loc[listed['Split'] == 'TEST', 'FileName'].iloc[0]}.avi"
    good = [screen, patient, shutil.copy(generated, folder)] + \
        ([shutil.copy(SAMPLE_VIDEOS[0], folder)] if SAMPLE_VIDEOS else [])
    (folder / "corrupt.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    write_dicom(folder / "still.dcm", grey[:1], PatientName=PATIENT)
    (folder / "notes.txt").write_text("not a video\n")
    bad = [folder / "corrupt.avi", folder / "still.dcm", folder / "notes.txt"]
    return {"good": [str(p) for p in good], "bad": [str(p) for p in bad], "folder": folder}


def wait(browser, condition, what):
    return WebDriverWait(browser, WAIT, poll_frequency=0.2).until(lambda _: condition(), message=what)


def submit(browser, button="score", paths=()):
    """Upload `paths` (after clearing the previous ones) and press `button`; returns the new result rows."""
    browser.execute_script("document.getElementById('ef-rows')?.setAttribute('data-old', '1')")
    if paths:
        for clear in browser.find_elements(By.CSS_SELECTOR, "#upload button[aria-label=Clear]"):
            clear.click()
        upload = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"),
                      "the upload field")[0]
        upload.send_keys("\n".join(map(str, paths)))
        wait(browser, lambda: all(os.path.basename(p).rsplit(".", 1)[0] in browser.find_element(By.ID, "upload").text
                                  for p in paths), "the uploads listed")
    browser.find_element(By.ID, button).click()
    rows = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#ef-rows:not([data-old]) .ef-row"),
                "a new result")
    return {row.find_element(By.CLASS_NAME, "ef-name").text: row for row in rows}


def loaded(browser, selector):
    """True once the element shows decoded content (an image's pixels, a video's frames)."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return false;"
        "return e.tagName === 'IMG' ? e.complete && e.naturalWidth > 0 : e.readyState >= 2 && e.duration > 0;",
        selector)


def cam_label(browser):
    return browser.find_element(By.CSS_SELECTOR, "#cam-video label").text


@pytest.fixture(scope="module")
def scored(server, browser, videos, checkpoint, tmp_path_factory):
    """The good uploads on the page, and predict.py on the same files with the same options."""
    out = tmp_path_factory.mktemp("predict") / "ef.csv"
    assert predict.main(["--pretrained_weights", str(checkpoint), *MODEL, "--num_workers", "0",
                         "--output", str(out), *videos["good"]]) == 0
    open_page(browser, server)
    rows = submit(browser, paths=videos["good"])
    for selector in ("#crop-image img", "#curve img", "#cam-video video"):
        wait(browser, lambda: loaded(browser, selector), selector)
    link = browser.find_element(By.CSS_SELECTOR, "#csv a").get_attribute("href")
    with urllib.request.urlopen(link) as response:
        page_csv = response.read().decode()
    return {"rows": {name: row.text for name, row in rows.items()}, "page_csv": page_csv,
            "predict": pd.read_csv(out, dtype=str, keep_default_na=False), "predict_csv": out.read_text()}


@needs_browser
def test_the_page_shows_predict_pys_ef_crop_curve_and_grad_cam(server, browser, videos, scored, reference, tmp_path):
    names = [os.path.basename(p) for p in videos["good"]]
    assert sorted(scored["rows"]) == sorted(names)  # one row per file
    table = scored["predict"]
    for path, name in zip(videos["good"], names):
        row = table[table["file"] == path].iloc[0]
        ef, sd = float(row["ef"]), float(row["ef_std"])
        shown = scored["rows"][name]
        assert f"{ef:.1f} ± {sd:.1f} %" in shown, (name, shown)
        assert f"{row['n_clips']} clip(s)" in shown and ("normal" in shown or "reduced" in shown)
        # beside the EF: the nearest training videos' EF, and the flag where predict.py's row has it
        assert f"EF of the nearest training videos {float(row['ef_knn']):.1f} %" in shown, (name, shown)
        assert (UNFAMILIAR in shown) == (row["unfamiliar"] == "1"), (name, shown)
        assert row["unfamiliar"] == str(int(float(row["distance"]) > np.quantile(reference.val_distances, 0.99)))
    assert "1" in set(table["unfamiliar"]) and NO_REFERENCE not in browser.find_element(By.ID, "summary").text
    # the CSV offered is predict.py's, the file's path and time aside (the page has only a copy of each upload)
    page = list(csv.reader(io.StringIO(scored["page_csv"])))
    mine = list(csv.reader(io.StringIO(scored["predict_csv"])))
    assert page[0] == mine[0] == CSV_COLUMNS
    time_column = CSV_COLUMNS.index("file_mtime_ns")
    assert {r[time_column] for r in page[1:]} == {""}
    assert sorted(r[1:time_column] for r in page[1:]) == sorted(r[1:time_column] for r in mine[1:])
    assert sorted(os.path.basename(r[0]) for r in mine[1:]) == sorted(r[0] for r in page[1:])
    # the crop shown is the one predict.py used
    screen = table[table["file"].str.endswith("screen.mp4")].iloc[0]
    frame_label = browser.find_element(By.CSS_SELECTOR, "#crop-image label").text
    # where the crop came from: the row's crop_source in words, or the crop asked for where rows lack it
    source = "found from the moving sector" if "crop_source" in table else "auto"
    assert frame_label == f"screen.mp4: first frame, crop {screen['crop']} ({source})"
    assert "Research tool, not a diagnosis" in browser.find_element(By.ID, "disclaimer").text
    assert "Grad-CAM of the clip at frame" in cam_label(browser)
    # nothing from elsewhere: every resource the page loaded came from the app
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(server["url"]) for r in resources), resources
    assert PATIENT.split("^")[0] not in browser.find_element(By.TAG_NAME, "body").text
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"


@needs_browser
def test_clicking_the_curve_or_picking_a_video_shows_its_pictures(browser, scored):
    before = cam_label(browser)
    curve = browser.find_element(By.CSS_SELECTOR, "#curve img")
    # the far left of the figure is nearest to the first clip (frame 0); the default clip (nearest the mean) is not
    assert "frame 0 " not in before
    webdriver.ActionChains(browser).move_to_element_with_offset(curve, -curve.size["width"] // 2 + 3, 0).click() \
        .perform()
    wait(browser, lambda: "clip at frame 0 " in cam_label(browser), "the Grad-CAM of clip 0")
    wait(browser, lambda: loaded(browser, "#cam-video video"), "the new Grad-CAM video")
    browser.find_element(By.CSS_SELECTOR, "#video-pick input").click()  # another video's pictures
    # the list may show its items before their names: wait for the one wanted
    option = wait(browser, lambda: [o for o in browser.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li")
                                    if o.text == "patient.dcm"], "patient.dcm in the list of videos")[0]
    option.click()
    wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, "#crop-image label").text ==
         "patient.dcm: first frame, 112x112: used as it is", "the DICOM's first frame")
    wait(browser, lambda: loaded(browser, "#curve img") and loaded(browser, "#cam-video video"), "its pictures")


@needs_browser
def test_bad_files_show_their_error_and_the_page_goes_on(server, browser, videos, scored):
    rows = submit(browser, paths=videos["bad"])
    assert sorted(rows) == ["corrupt.avi", "notes.txt", "still.dcm"]
    for name, words in (("corrupt.avi", "cannot be opened as a video"), ("notes.txt", "not a video this page reads"),
                        ("still.dcm", "skipped: single frame: not a cine loop")):
        text = rows[name].find_element(By.CLASS_NAME, "ef-error").text
        assert text.startswith(f"{name}: ") and words in text and "\n" not in text, text
    assert not browser.find_elements(By.CSS_SELECTOR, "#curve img")  # the last video's pictures are gone
    rows = submit(browser, button="example")  # the server is still up and scores the next file
    (name, row), = rows.items()
    assert name.startswith("synthetic_ef") and name.endswith(".avi") and " %" in row.text
    assert "EF of the nearest training videos" in row.text  # the example is checked for familiarity too
    wait(browser, lambda: loaded(browser, "#cam-video video"), "the example's Grad-CAM")


@needs_browser
def test_the_server_stops_on_sigterm_and_leaves_no_file(server, browser, scored, reference):
    browser.get("about:blank")  # no open connection for the server to wait for
    process = server["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    log = server["log"].read_text()
    assert "Traceback" not in log and PATIENT not in log and "12345" not in log
    assert log.count(f"familiarity: {reference.path} (") == 1  # the reference found beside the checkpoint, said once
    assert list(server["scratch"].iterdir()) == []  # uploads, pictures, CSVs, the example: all removed
    assert server["outside"].read_text() == ""  # no analytics, no version check, nothing off this machine


def test_the_pages_rows_are_predict_pys_with_the_familiarity_columns(checkpoint, reference, videos, tmp_path,
                                                                     capsys):
    """The page's own scoring (app.score_files) and predict.main on the same files, checkpoint and --reference
    FILE: the same rows, distance, unfamiliar and ef_knn included; the page's log names the reference once."""
    paths = videos["good"][:2]  # the screen recording and the DICOM
    given = ["--pretrained_weights", str(checkpoint), *MODEL, "--reference", reference.path]
    out = tmp_path / "ef.csv"
    assert predict.main([*given, "--num_workers", "0", "--output", str(out), *paths]) == 0
    capsys.readouterr()
    scorer = app.Scorer(app.parse_option(given))
    assert capsys.readouterr().out.count(f"familiarity: {reference.path} (") == 1
    _, rows, _ = app.score_files(scorer, paths, "auto", lambda *args, **kwargs: None)
    theirs = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("file").loc[paths].reset_index()
    threshold = np.quantile(reference.val_distances, 0.99)  # the flag's definition, from the reference's numbers
    assert [row["file"] for row in rows] == [os.path.basename(p) for p in paths]
    for row, (_, their) in zip(rows, theirs.iterrows()):
        assert row["status"] == their["status"] == "scored"
        for column in ("ef", "ef_std", "distance", "ef_knn"):  # the CSV keeps 5 decimals
            assert row[column] == pytest.approx(float(their[column]), abs=1e-5), column
        assert row["unfamiliar"] == int(their["unfamiliar"]) == int(row["distance"] > threshold)
    # the CSV the page offers: predict.py's cells, the file's path and time aside
    page = pd.read_csv(app.write_csv(rows, tmp_path), dtype=str, keep_default_na=False)
    same = [column for column in CSV_COLUMNS if column not in ("file", "file_mtime_ns")]
    assert page[same].equals(theirs[same]) and set(page["distance"]) != {""}


def test_without_a_reference_the_page_says_once_why_its_columns_are_empty(checkpoint, reference, videos, tmp_path,
                                                                         capsys, monkeypatch):
    scorer = app.Scorer(app.parse_option(["--pretrained_weights", str(checkpoint), *MODEL, "--reference", "none"]))
    assert capsys.readouterr().out.count("familiarity: off (--reference none); distance, unfamiliar, ef_knn stay "
                                         "empty") == 1
    monkeypatch.setattr(app, "gr", importlib.import_module("gradio"))  # as main() does
    page = app.Page(scorer, SessionJobs(tmp_path / "jobs"), example=None)
    # the page's handler: its first answer is the summary of the EFs
    summary = next(page.on_score(videos["good"][:1], "auto", "session", lambda *args, **kwargs: None))[page.summary]
    assert "screen.mp4" in summary and " %" in summary and "EF of the nearest" not in summary
    assert summary.count(html.escape(NO_REFERENCE)) == 1
    assert capsys.readouterr().out.count("familiarity") == 0  # the log said it once, at the start


def test_options_safe_defaults_and_the_demo_model(checkpoint, monkeypatch):
    opt = app.parse_option(["--pretrained_weights", str(checkpoint), *MODEL, "--batch_size", "4"])
    assert (opt.host, opt.port, opt.max_upload_mb) == ("127.0.0.1", 7860, 500)
    assert (opt.model, opt.frames, opt.frequency, opt.batch_size, opt.crop, opt.num_workers) == \
        ("uniformer_tiny", 8, 2, 4, "auto", 0)  # predict.py's options; files read in the app's process
    monkeypatch.setattr(app, "DEMO_WEIGHTS", checkpoint)  # no --pretrained_weights: the demo's model and shape
    opt = app.parse_option(["--frames", "12"])
    assert (opt.pretrained_weights, opt.model, opt.frames, opt.frequency) == (str(checkpoint), "uniformer_tiny", 12, 4)
    monkeypatch.setattr(app, "DEMO_WEIGHTS", checkpoint.parent / "missing.pth")
    with pytest.raises(BadInputError, match="run `bash demo.sh` first, or pass --pretrained_weights"):
        app.parse_option([])
    with pytest.raises(SystemExit) as refused:  # files are uploaded, never named on the command line
        app.parse_option(["--pretrained_weights", str(checkpoint), "echo.avi"])
    assert refused.value.code == 2
    with pytest.raises(BadInputError, match="crop"):
        app.parse_option(["--pretrained_weights", str(checkpoint), "--crop", "1,2"])


def test_ef_ranges_follow_the_value_shown():
    assert [app.ef_range(ef)[0].split(" (")[0] for ef in (62.0, 49.96, 49.94, 41.0, 40.06, 40.04, 12.0)] == \
        ["normal", "normal", "mildly reduced", "mildly reduced", "mildly reduced", "reduced", "reduced"]
