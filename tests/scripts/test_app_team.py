"""app.py for a team: a login (--auth_file, hashed password) over HTTPS (a certificate made here), and jobs
that belong to the browser session that made them.

One server for the module, on 127.0.0.1 with the login forced on by --auth_file (tests never bind another
address: the start-up decision for 0.0.0.0 is tested in this process, where any socket would fail), with
--jobs_per_session 2 --max_jobs 3. Through gradio_client: no API without a login, a wrong password refused
after a wait, the right one scores (a crop left out or null is the default); two sessions scoring at once keep
their own results and pictures, and a full page refuses a third session instead of removing theirs. In
Chromium: the login form, the EF, and the session's folders removed once its tab is gone.
"""
import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gradio_client import Client, handle_file

import app
from conftest import REPO_ROOT, free_port, write_avi
from page.auth import AUTH_ENV, hash_password
from scoring.rows import CSV_COLUMNS
from test_app import MODEL, WAIT, checkpoint, loaded, needs_browser, start_browser, wait  # noqa: F401 - a fixture
from utils.script.errors import BadInputError

try:
    from selenium.webdriver.common.by import By
except ImportError:
    By = None

pytestmark = pytest.mark.usefixtures("one_torch_thread")
USER, PASSWORD = "ana", "correct horse battery"
UNVERIFIED = ssl._create_unverified_context()  # the test's own certificate, for 127.0.0.1


def make_certificate(folder):
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day: (certificate, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)).add_extension(names, critical=False)
                   .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """Three short 112x112 loops (50 fps) of different names and pixels."""
    folder = tmp_path_factory.mktemp("uploads")
    for seed, name in enumerate(("first.avi", "second.avi", "third.avi")):
        write_avi(folder / name, np.random.default_rng(seed).integers(0, 256, (30, 112, 112), dtype=np.uint8))
    return {path.name: str(path) for path in folder.iterdir()}


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):  # noqa: F811 - test_app's checkpoint fixture
    root = tmp_path_factory.mktemp("team")
    scratch = root / "tmp"
    scratch.mkdir()
    certificate, key = make_certificate(root)
    (root / "users.txt").write_text(f"# the team\n{USER}:{hash_password(PASSWORD, iterations=20_000)}\nben:other\n")
    port = free_port()
    log = open(root / "app.log", "w")
    process = subprocess.Popen([sys.executable, "app.py", "--pretrained_weights", str(checkpoint), *MODEL,
                                "--port", str(port), "--auth_file", str(root / "users.txt"), "--ssl_certfile",
                                str(certificate), "--ssl_keyfile", str(key), "--jobs_per_session", "2",
                                "--max_jobs", "3"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1",
                                    # Gradio notices a closed tab at its next heartbeat (15 s by default)
                                    "GRADIO_HEARTBEAT_INTERVAL": "0.5"})
    url = f"https://127.0.0.1:{port}/"
    deadline = time.time() + WAIT
    while True:
        try:
            urllib.request.urlopen(url, timeout=2, context=UNVERIFIED).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"app.py did not start: {(root / 'app.log').read_text()[-3000:]}")
            time.sleep(0.3)
    yield {"url": url, "process": process, "log": root / "app.log", "scratch": scratch}
    process.kill()
    log.close()


def job_folders(server):
    return sorted(p.name for p in server["scratch"].glob("coreecho-app-*/jobs/*"))


def client(server, tmp_path, auth=(USER, PASSWORD)):
    return Client(server["url"], auth=auth, ssl_verify=False, verbose=False, download_files=str(tmp_path))


def status(url, data=None):
    """The HTTP status of a GET (or a form POST) without a login."""
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30, context=UNVERIFIED) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_off_loopback_without_credentials_exits_2_before_any_socket(checkpoint, monkeypatch, capsys, tmp_path):  # noqa: F811
    def no_socket(*args, **kwargs):
        raise AssertionError("a socket was opened")

    monkeypatch.delenv(AUTH_ENV, raising=False)
    monkeypatch.setattr(socket.socket, "bind", no_socket)
    monkeypatch.setattr(app, "Scorer", no_socket)  # nor is the model loaded
    with pytest.raises(SystemExit) as stopped:
        app.main(["--pretrained_weights", str(checkpoint), *MODEL, "--host", "0.0.0.0"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --host 0.0.0.0 lets other machines reach the page")
    (tmp_path / "users.txt").write_text("ana:pw\nben pw\n")
    with pytest.raises(BadInputError, match=f"^{tmp_path / 'users.txt'}, line 2: not user:password$"):
        app.main(["--pretrained_weights", str(checkpoint), *MODEL, "--host", "0.0.0.0", "--auth_file",
                  str(tmp_path / "users.txt")])


def test_without_a_login_only_the_login_form_is_served(server, tmp_path):
    url = server["url"]
    assert status(url) == 200  # the page's shell, which shows the login form
    for path in ("config", "gradio_api/info", "gradio_api/call/score"):
        assert status(url + path, data=b"{}" if path.endswith("score") else None) == 401, path
    with pytest.raises(Exception, match="(?i)login|auth|401"):
        Client(url, ssl_verify=False, verbose=False, download_files=str(tmp_path))


def test_a_wrong_password_is_refused_after_a_wait(server, tmp_path):
    began = time.perf_counter()
    assert status(server["url"] + "login", data=f"username={USER}&password=wrong".encode()) == 400
    assert time.perf_counter() - began >= 1.0
    with pytest.raises(Exception, match="(?i)credentials|login|auth"):
        client(server, tmp_path, auth=(USER, PASSWORD + " "))


def scored(job):
    """(summary HTML, CSV table) of a /score call: its first answer (the EF; the next one adds the pictures)."""
    job.result(timeout=WAIT)
    first = job.outputs()[0]
    return first[0], pd.read_csv(first[1], dtype=str, keep_default_na=False)


def test_the_right_password_scores_and_a_crop_left_out_or_null_is_the_default(server, uploads, tmp_path):
    api = client(server, tmp_path)
    for crop in ({"crop": None}, {}):
        summary, table = scored(api.submit([handle_file(uploads["first.avi"])], **crop, api_name="/score"))
        assert "first.avi" in summary and " %" in summary and "error" not in summary, summary
        assert list(table.columns) == CSV_COLUMNS and list(table["file"]) == ["first.avi"]
        assert list(table["status"]) == ["scored"]
    api.close()


def score_at_once(apis, names, uploads):
    """Each client scores its own file, all submitted together: the results, in order."""
    jobs = [api.submit([handle_file(uploads[name])], "auto", api_name="/score") for api, name in zip(apis, names)]
    return [scored(job) for job in jobs]


@pytest.mark.slow  # two processes / servers: .ci/run runs it after the main suite
def test_two_sessions_keep_their_own_results_and_a_full_page_refuses_a_third(server, uploads, tmp_path):
    wait_for(lambda: job_folders(server) == [], "the earlier sessions' folders removed")
    a, b = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    results = score_at_once([a, b], ["first.avi", "second.avi"], uploads)
    for (summary, table), mine, other in zip(results, ["first.avi", "second.avi"], ["second.avi", "first.avi"]):
        assert mine in summary and other not in summary and list(table["file"]) == [mine]
    for name in ("third.avi", "first.avi"):  # b scores twice more: only b's own oldest folder goes
        assert name in scored(b.submit([handle_file(uploads[name])], "auto", api_name="/score"))[0]
    assert len(job_folders(server)) == 3
    cam = a.predict(0, 0, api_name="/pick_clip")  # a's pictures are still there: a Grad-CAM of its clip 0
    assert "frame 0 " in str(cam) or any(str(part).endswith((".webm", ".gif", ".mp4")) for part in
                                            flatten(cam)), cam
    summary = client(server, tmp_path / "c").predict([handle_file(uploads["third.avi"])], "auto",
                                                      api_name="/score")[0]  # one answer: the refusal
    assert "the page is busy" in summary and len(job_folders(server)) == 3
    for api in (a, b):
        api.close()


def flatten(value):
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in flatten(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in flatten(v)]
    return [value]


def wait_for(condition, what, timeout=WAIT):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.2)


@needs_browser
def test_in_chromium_the_login_then_the_ef_and_the_session_folders_go_with_the_tab(server, uploads, tmp_path):
    browser = start_browser(tmp_path / "chromium", "--ignore-certificate-errors")
    try:
        wait_for(lambda: job_folders(server) == [], "the earlier sessions' folders removed")
        browser.get(server["url"])
        field = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=password]"), "the login")
        assert not browser.find_elements(By.ID, "upload")  # nothing of the page before the login
        browser.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys(USER)
        field[0].send_keys(PASSWORD)
        browser.find_element(By.XPATH, "//button[normalize-space()='Login']").click()
        upload = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"),
                      "the page after the login")[0]
        upload.send_keys(uploads["second.avi"])
        wait(browser, lambda: "second" in browser.find_element(By.ID, "upload").text, "the upload listed")
        browser.find_element(By.ID, "score").click()
        row = wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#ef-rows .ef-row .ef-value"), "the EF")
        assert row[0].text.endswith(" %") and len(job_folders(server)) == 1
        wait(browser, lambda: loaded(browser, "#cam-video video"), "the job's Grad-CAM")  # the job is complete
    finally:
        browser.quit()  # the browser closes the tab: its connection ends and Gradio's unload event removes the job
    wait_for(lambda: job_folders(server) == [], "the closed session's folder removed", timeout=60)
