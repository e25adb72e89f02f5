"""Seconds from upload to EF on the web page (app.py), and where they go.

Starts app.py (its own process, as a user would) and sends it, through gradio_client (the page's own HTTP
API: upload, queue, result stream), an EchoNet AVI (112x112, 50 fps) and the same video as a user would export
it (bench_predict.write_screen_mp4: enlarged into a 640x480 screen with text, 30 fps MP4). For each call:
  upload -> EF     from the start of the upload to the EF row arriving (the page shows the EF first)
  read, model      the app's own split of its scoring (its `job:` line): reading + converting + cutting the
                   clips, and the forward passes
  rest             upload, queue, CSV, transfer: upload -> EF minus read and model
  pictures         after the EF: first frame with the crop, the EF curve and the Grad-CAM video
The median of --repeats calls after one warm-up call. Videos: the first real sample (../shared/data) or a
synthetic one. Weights: --pretrained_weights, or random weights of --model (seeded).

    python benchmarks/bench_app.py [--model uniformer_small --frames 36 --frequency 4] [--device cpu|cuda]
                                   [--repeats 3] [--threads N]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_predict import SAMPLES, write_screen_mp4  # noqa: E402
from datasets import make_synthetic_echonet  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from utils.files.checkpoint import save_best  # noqa: E402

JOB = re.compile(r"job: .* read ([\d.]+) s, model ([\d.]+) s, EF after ([\d.]+) s, pictures ([\d.]+) s")


def start_app(opt, weights, tmp, port):
    log = open(tmp / "app.log", "w")
    args = [sys.executable, str(ROOT / "app.py"), "--pretrained_weights", str(weights), "--model", opt.model,
            "--frames", str(opt.frames), "--frequency", str(opt.frequency), "--device", opt.device, "--port", str(port)]
    env = {**os.environ, "TMPDIR": str(tmp)}
    if opt.threads:
        env["OMP_NUM_THREADS"] = str(opt.threads)
    process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(1200):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return process, url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"app.py did not start: {(tmp / 'app.log').read_text()[-2000:]}")


def one_call(client, path, log):
    """(upload -> EF s, read s, model s, pictures s) of one upload, as the page sees it."""
    from gradio_client import handle_file

    seen = len(JOB.findall(log.read_text()))
    began = time.perf_counter()
    job = client.submit([handle_file(str(path))], "auto", api_name="/score")
    ef_at = None
    for _ in job:  # the first result holds the EF (and the CSV); the next one the pictures
        ef_at = ef_at or time.perf_counter() - began
    job.result()
    for _ in range(100):  # the app prints its split once the pictures are done
        found = JOB.findall(log.read_text())
        if len(found) > seen:
            read, model, _, pictures = map(float, found[-1])
            return ef_at, read, model, pictures
        time.sleep(0.05)
    raise SystemExit(f"no job line in {log}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained_weights", default=None)
    parser.add_argument("--model", default="uniformer_small")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--frequency", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=7899)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the app (default: torch's)")
    opt = parser.parse_args()
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        avis = sorted((SAMPLES / "Videos").glob("*.avi")) or \
            sorted((make_synthetic_echonet(tmp / "synthetic", n=6, seed=0) / "Videos").glob("*.avi"))
        avi = avis[0]
        mp4 = write_screen_mp4(avi, tmp / (avi.stem + ".mp4"))
        weights = opt.pretrained_weights
        if weights is None:
            torch.manual_seed(0)
            model = get_feature_extractor(opt.model)
            weights = tmp / "best.pth"
            save_best(weights, model, get_shallow_mlp_head(model.head.in_features), 0, 0.0)
        process, url = start_app(opt, weights, tmp, opt.port)
        try:
            client = Client(url, verbose=False)
            print(f"app.py on {opt.device}, {opt.model}, clips of {opt.frames} frames every {opt.frequency}; "
                  f"median of {opt.repeats} calls after a warm-up; {avi.name} from {avi.parent}")
            print(f"{'input':28s} {'upload->EF s':>12s} {'read s':>8s} {'model s':>8s} {'rest s':>8s} "
                  f"{'pictures s':>10s}")
            for label, path in (("EchoNet AVI 112x112 50fps", avi), ("640x480 30fps MP4 + text", mp4)):
                one_call(client, path, tmp / "app.log")
                calls = np.array([one_call(client, path, tmp / "app.log") for _ in range(opt.repeats)])
                ef, read, model_s, pictures = np.median(calls, axis=0)
                print(f"{label:28s} {ef:12.2f} {read:8.2f} {model_s:8.2f} {ef - read - model_s:8.2f} "
                      f"{pictures:10.2f}")
        finally:
            process.terminate()
            process.wait(timeout=60)
            if os.environ.get("BENCH_APP_LOG"):
                print((tmp / "app.log").read_text())


if __name__ == "__main__":
    main()
