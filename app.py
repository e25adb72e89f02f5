"""A local web page for one echo: upload a video (AVI/MP4/MOV/MKV or DICOM), get its EF, see how it was read.

    python app.py --pretrained_weights best.pth --model uniformer_small [--host 127.0.0.1] [--port 7860]
    python app.py                      # the demo's model (save/demo, written by `bash demo.sh`)
    python app.py --host 0.0.0.0 --auth_file users.txt --ssl_certfile cert.pem --ssl_keyfile key.pem  # a team

Built with Gradio. One code path with predict.py (scoring/, through page.scoring: its options with --crop as the
page's default, its clips, EF, familiarity check and CSV row), so the page's row of a file is predict.py's. It shows
the EF (mean +- SD over clips) with its range, the nearest training videos' EF and the unfamiliar flag, the first
frame with the crop, the EF per clip (as predict.py --plot), the Grad-CAM of one clip (as visualize.py cam) and the
CSV. Safe by default: it listens on 127.0.0.1 (elsewhere only with a login, page.auth), makes no share link, sends
no analytics, accepts uploads up to --max_upload_mb, keeps each session's jobs apart (page.jobs) in one temporary
folder removed when it stops, shows and logs no DICOM header field, runs one job at a time.
"""
import argparse
import functools
import html
import importlib
import inspect
import os
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from datasets.clips import denormalise
from datasets.sources.any_video import first_frame, parse_crop
from datasets.synthetic.echonet import make_synthetic_echonet
from utils.engine.amp import amp_dtype
from utils.engine.distributed import init_distributed
from utils.evaluation.grad_cam import grad_cam
from utils.pictures.cam import BROWSER_FORMATS, write_cam_video
from page.auth import AUTH_ENV, launch_access
from page.display import crop_text, ef_range, summary_html  # noqa: F401 - ef_range: tested through app
from page.jobs import PageBusyError, SessionJobs
from page.scoring import score_files, write_csv
from scoring.archive_clips import SCORED
from models.settings import conflict
from scoring.familiarity import add_reference_arg
from scoring.options import add_scoring_args
from scoring.scorer import load_scorer, run_reference
from utils.pictures.plots import plt, video_ef_figure
from utils.script.cli import run_main
from utils.script.errors import BadInputError, UserError
from utils.script.options import parser_with_defaults
from utils.script.validators import positive_int

gr = None  # gradio, imported by main() once GRADIO_TEMP_DIR is set (gradio fixes folders when imported)
ROOT = Path(__file__).resolve().parent
DEMO_WEIGHTS = ROOT / "save" / "demo" / "stage2" / "best.pth"
DEMO_SHAPE = {"model": "uniformer_tiny", "frames": 16, "frequency": 4}  # as demo.sh trains it
DISCLAIMER = ("**Research tool, not a diagnosis.** The EF comes from a model trained on EchoNet-Dynamic "
              "apical-4-chamber videos; it has not been validated for clinical use.")
CSS = """.ef-row {display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 1.2em; padding: .4em 0;
border-bottom: 1px solid #ddd} .ef-value {font-size: 2.6em; font-weight: 700} .ef-name {font-weight: 600}
.ef-range {font-size: 1.2em; font-weight: 600} .ef-normal {color: #1a7f37} .ef-mild {color: #9a6700}
.ef-reduced {color: #cf222e} .ef-meta, .ef-notes {width: 100%; color: #555} .ef-error {color: #cf222e}
.ef-knn {font-size: 1.1em} .ef-unfamiliar {width: 100%; color: #9a6700; font-weight: 600}"""


# ---------------------------------------------------------------- options and model

def parse_option(argv=None):
    """The page's own options and predict.py's scoring options (scoring.options), in one namespace."""
    parser = parser_with_defaults("app.py", "A local web page that scores echo videos with a CoReEcho model")
    parser.add_argument("--pretrained_weights", default=None,
                        help=f"a CoReEcho checkpoint or hf://OWNER/REPO/FILE; default: the demo's model "
                             f"({DEMO_WEIGHTS}) when it exists")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; any other than loopback (0.0.0.0: every machine that reaches "
                             "this one) needs --auth_file, and should have --ssl_certfile/--ssl_keyfile")
    parser.add_argument("--port", type=positive_int, default=7860)
    parser.add_argument("--auth_file", default=None,
                        help=f"a login for the page: a file of user:password lines (or ${AUTH_ENV}); hash a "
                             "password with `python -m page.auth hash-password` (never give one on the command line)")
    parser.add_argument("--ssl_certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl_keyfile", default=None, help="the certificate's private key (PEM)")
    parser.add_argument("--jobs_per_session", type=positive_int, default=2,
                        help="job folders (CSV, Grad-CAM) a browser session keeps: its own oldest goes first")
    parser.add_argument("--max_jobs", type=positive_int, default=16,
                        help="job folders of all sessions together; a new job beyond it is refused, never "
                             "made room for with another session's")
    parser.add_argument("--job_ttl_min", type=positive_int, default=60,
                        help="a session's jobs are removed when its tab closes, or this long after its last use; "
                             "uploads and copies served to the browser this long after they were made")
    parser.add_argument("--max_upload_mb", type=positive_int, default=500, help="largest upload accepted")
    add_scoring_args(parser)
    add_reference_arg(parser)
    next(a for a in parser._actions if a.dest == "num_workers").help = argparse.SUPPRESS  # accepted, unused
    opt = parser.parse_args(argv)  # files are uploaded: a file name here is refused
    if opt.pretrained_weights is None:
        if not DEMO_WEIGHTS.is_file():
            raise BadInputError(f"no --pretrained_weights and no demo model ({DEMO_WEIGHTS}): run `bash demo.sh` "
                                "first, or pass --pretrained_weights CKPT|hf://OWNER/REPO/FILE")
        # the demo's model and clip shape, unless the command line says otherwise
        parser.set_defaults(pretrained_weights=str(DEMO_WEIGHTS), **DEMO_SHAPE)
        opt = parser.parse_args(argv)
    opt.num_workers = 0  # the page reads each file in its own process (progress bar)
    parse_crop(opt.crop)
    return opt


class Scorer:
    """The model of the page and how it runs (scoring.scorer.load_scorer, on predict.py's device and AMP)."""

    def __init__(self, opt):
        self.opt = opt
        self.device = init_distributed(opt.device).device
        self.amp = amp_dtype(opt.amp, self.device)
        self.model, self.regressor, weights = load_scorer(opt, self.device)
        contradiction = conflict(opt, weights)  # a flag that contradicts the checkpoint runs as asked
        if contradiction:
            print(f"WARNING: {contradiction}", flush=True)
        self.reference, notes = run_reference(opt, weights)  # predict.py's familiarity reference, said once
        for level, line in notes:
            print(("WARNING: " if level == "warning" else "") + line, flush=True)


# ---------------------------------------------------------------- what the page shows

def first_frame_with_crop(path, crop):
    """The first frame of the original file (any_video's own reader: the frame the box was found on, RGB) with
    the crop box drawn; a 112x112 video used as it is gets no box. Small frames are enlarged so the box shows."""
    frame = first_frame(path)
    scale = max(1, round(336 / max(frame.shape[:2])))
    frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale > 1 else frame
    if crop:
        x, y, w, h = (scale * int(v) for v in crop.split(","))
        thickness = max(2, round(max(frame.shape[:2]) / 200))
        cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (255, 40, 40), thickness)
    return frame


def curve_picture(video, chosen):
    """predict.py --plot's figure of the video with clip `chosen` ringed, as RGB pixels, and the x pixel of
    every clip (to find the clip clicked on)."""
    starts, ef = video["starts"], video["clip_ef"]
    fig = video_ef_figure(starts, ef, video["preview"], video["preview_indexes"], title=video["name"])
    axis = fig.axes[0]
    axis.plot(starts[chosen], ef[chosen], "o", ms=14, mfc="none", mec="tab:red", mew=2,
              label=f"Grad-CAM clip (frame {starts[chosen]})")
    axis.legend(loc="best", fontsize=8)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    x_pixels = axis.transData.transform(np.c_[starts, ef])[:, 0]
    plt.close(fig)
    return pixels, x_pixels


def cam_file(scorer, video, chosen, folder):
    """visualize.py cam's Grad-CAM of clip `chosen` as a video the browser plays (WebM; GIF without VP8)."""
    heat, ef = grad_cam(scorer.model, scorer.regressor, video["clips"][chosen])
    path = write_cam_video(os.path.join(folder, f"cam_{video['starts'][chosen]}.webm"),
                           denormalise(video["clips"][chosen]), heat, formats=BROWSER_FORMATS)
    return path, ef


def scored_video(state, k):
    """Video k of the last job if it was scored, else None (a choice made before that job ended)."""
    videos = state["videos"] if state else []
    return videos[k] if k is not None and 0 <= k < len(videos) and videos[k]["status"] == SCORED else None


# ---------------------------------------------------------------- the page

def example_video(root):
    """One synthetic EchoNet-format video (datasets.synthetic.echonet), made at start-up: the same every time
    (seed 1: not demo.sh's seed 0, so the demo model never saw it), and no binary in the repository. Its name
    carries the EF it was drawn with."""
    folder = make_synthetic_echonet(Path(root, "example"), n=6, seed=1, min_frames=100, max_frames=120)
    first = pd.read_csv(folder / "FileList.csv").iloc[0]
    path = Path(root, f"synthetic_ef{first['EF']:.0f}.avi")
    os.replace(folder / "Videos" / f"{first['FileName']}.avi", path)
    shutil.rmtree(folder)
    return str(path)


class Page:
    """The Gradio page (`self.blocks`) and its handlers; every event that runs the model shares one queue slot."""

    def __init__(self, scorer, jobs, example):
        self.scorer, self.jobs, self.example = scorer, jobs, example
        # uploads and the copies of outputs Gradio serves: removed once older than a job's time to live
        with gr.Blocks(title="CoReEcho: EF of an echo video", analytics_enabled=False,
                       delete_cache=(min(600, jobs.ttl_s), jobs.ttl_s)) as self.blocks:
            self._layout()
            self._wire()

    def _layout(self):
        gr.Markdown("# CoReEcho: ejection fraction of an echo video")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        with gr.Row():
            with gr.Column(scale=1):
                self.files = gr.File(label="Echo video(s): AVI, MP4, MOV, MKV, GIF or DICOM", file_count="multiple",
                                     type="filepath", elem_id="upload")
                self.crop = gr.Textbox(value=self.scorer.opt.crop, label="Crop", elem_id="crop",
                                       info="auto (the moving sector), none, or x,y,w,h in pixels (predict.py --crop)")
                with gr.Row():
                    self.score_button = gr.Button("Score", variant="primary", elem_id="score")
                    self.example_button = gr.Button("Example (synthetic video)", elem_id="example")
            with gr.Column(scale=2):
                self.summary = gr.HTML(elem_id="summary")
                self.csv_file = gr.File(label="CSV (predict.py's columns)", elem_id="csv")
        with gr.Row():
            self.video_pick = gr.Dropdown(label="Video shown below", choices=[], elem_id="video-pick")
            self.clip_pick = gr.Dropdown(label="Grad-CAM clip (or click a clip on the curve)", choices=[],
                                         elem_id="clip-pick")
        with gr.Row():
            self.frame = gr.Image(label="First frame and crop", interactive=False, format="png", elem_id="crop-image")
            self.cam_video = gr.Video(label="Grad-CAM", interactive=False, autoplay=True, loop=True,
                                      elem_id="cam-video")
            self.cam_gif = gr.Image(label="Grad-CAM: clip | overlay", interactive=False, visible=False,
                                    elem_id="cam-gif")
        self.curve = gr.Image(label="EF per clip along the video (click a clip for its Grad-CAM)", interactive=False,
                              format="png", elem_id="curve")
        # the session's last job (clips, EFs), for the pictures; its folders go with it
        self.memory = gr.State(time_to_live=self.jobs.ttl_s, delete_callback=self.forget)

    def _wire(self):
        # every event may set everything (a handler's dict names what it changes; an error clears it all)
        everything = [self.summary, self.csv_file, self.memory, self.video_pick, self.clip_pick, self.frame,
                      self.curve, self.cam_video, self.cam_gif]

        # Gradio gives a handler a progress bar or the click by the defaults and types of its parameters
        def score(files, crop, request: gr.Request, progress=gr.Progress()):
            return self.on_score(files, crop, request.session_hash, progress)

        def closed(request: gr.Request):  # the tab closed or reloaded: its session's jobs are removed now
            self.jobs.release(request.session_hash)

        def pick_video(state, k, progress=gr.Progress()):
            return self.views(state, k, progress=progress)

        def pick_clip(state, k, chosen, progress=gr.Progress()):
            return self.views(state, k, chosen, progress)

        def click_curve(state, k, evt: gr.SelectData):
            return self.on_curve_click(state, k, evt.index[0])

        self.score_button.click(self.guarded(score), [self.files, self.crop], everything, concurrency_id="model")
        self.example_button.click(lambda: [self.example], None, self.files, queue=False).then(
            self.guarded(score), [self.files, self.crop], everything, concurrency_id="model")
        # .select: once per choice made by the user (.input fires again when the list loses focus)
        self.video_pick.select(self.guarded(pick_video), [self.memory, self.video_pick], everything,
                               concurrency_id="model")
        self.clip_pick.select(self.guarded(pick_clip), [self.memory, self.video_pick, self.clip_pick], everything,
                              concurrency_id="model")
        self.curve.select(self.guarded(click_curve), [self.memory, self.video_pick], everything,
                          concurrency_id="model")
        self.blocks.unload(closed)

    def forget(self, state):
        """Gradio dropped a session's state (closed tab, time to live): its job folders go too."""
        if state:
            self.jobs.release(state["session"])

    def views(self, state, k, chosen=None, progress=lambda *args, **kwargs: None):
        """The pictures of video k: first frame and crop, EF curve, Grad-CAM of clip `chosen` (default: the clip
        nearest the video's EF)."""
        video = scored_video(state, k)
        if video is None:
            return {}
        if not self.jobs.holds(state["session"], state["folder"]):
            raise PageBusyError(f"the pictures of this job were removed after {self.jobs.ttl_s / 60:g} minutes "
                                "without use: score the files again")
        ef = video["clip_ef"]
        chosen = int(np.argmin(np.abs(ef - ef.mean()))) if chosen is None else int(chosen)
        curve, video["x_pixels"] = curve_picture(video, chosen)
        progress(0.5, desc="Grad-CAM")
        cam, cam_ef = cam_file(self.scorer, video, chosen, state["folder"])
        if not self.jobs.written(state["session"], state["folder"]):  # the tab closed while Grad-CAM ran
            return {}
        crop = crop_text(video["row"], state["crop"]) if video["crop"] else "112x112: used as it is"
        webm = cam.endswith(".webm")
        clips = [(f"frame {start}: EF {e:.1f} %", i) for i, (start, e) in enumerate(zip(video["starts"], ef))]
        return {self.clip_pick: gr.update(choices=clips, value=chosen),
                self.frame: gr.update(value=first_frame_with_crop(video["path"], video["crop"]),
                                      label=f"{video['name']}: first frame, {crop}"),
                self.curve: curve,
                self.cam_video: gr.update(value=cam if webm else None, visible=webm,
                                          label=f"Grad-CAM of the clip at frame {video['starts'][chosen]} "
                                                f"(EF {cam_ef:.1f} %): clip | overlay"),
                self.cam_gif: gr.update(value=None if webm else cam, visible=not webm)}

    def cleared(self, message):
        return {self.summary: f'<div class="ef-error">{html.escape(message)}</div>', self.csv_file: None,
                self.memory: None, self.video_pick: gr.update(choices=[], value=None),
                self.clip_pick: gr.update(choices=[], value=None), self.frame: None, self.curve: None,
                self.cam_video: None, self.cam_gif: None}

    def guarded(self, handler):
        """Bad input never breaks the page: a user error is its one line, anything else a short line too.
        Every handler is a generator to Gradio (on_score shows the EF before the pictures)."""
        @functools.wraps(handler)  # Gradio reads the handler's signature (progress bar, click position)
        def run(*args, **kwargs):
            try:
                result = handler(*args, **kwargs)
                yield from (result if inspect.isgenerator(result) else [result])
            except UserError as e:
                yield self.cleared(" ".join(str(e).split()))
            except Exception as e:  # noqa: BLE001 - the server must stay up for the next upload
                traceback.print_exc()
                yield self.cleared(f"error: {type(e).__name__}: {' '.join(str(e).split())}")
        return run

    def on_score(self, files, crop, session, progress):
        if not files:
            yield self.cleared("Upload a video first (or press Example).")
            return
        crop = (crop or "").strip() or self.scorer.opt.crop  # left out or empty (API, cleared box): the default
        parse_crop(crop)
        began = time.perf_counter()
        state = {"folder": self.jobs.new(session), "crop": crop, "session": session}
        state["videos"], rows, timing = score_files(self.scorer, list(files), crop, progress)
        good = [k for k, video in enumerate(state["videos"]) if video["status"] == SCORED]
        # the EF first (the last job's pictures cleared), then the pictures of the first video scored
        yield {**self.cleared(""), self.memory: state, self.summary: summary_html(rows, self.scorer.reference is None),
               self.csv_file: write_csv(rows, state["folder"]),
               self.video_pick: gr.update(choices=[(state["videos"][k]["name"], k) for k in good],
                                          value=good[0] if good else None)}
        scored_s = time.perf_counter() - began
        if good:
            yield self.views(state, good[0], progress=progress)
        pictures_s = time.perf_counter() - began - scored_s
        print(f"job: {len(files)} file(s), {len(good)} scored; read {timing['read']:.2f} s, model "
              f"{timing['model']:.2f} s, EF after {scored_s:.2f} s, pictures {pictures_s:.2f} s", flush=True)

    def on_curve_click(self, state, k, x):
        """The Grad-CAM of the clip nearest to the x pixel clicked on the curve."""
        video = scored_video(state, k)
        return {} if video is None else self.views(state, k, int(np.argmin(np.abs(video["x_pixels"] - x))))


def main(argv=None):
    opt = parse_option(argv)
    # who may reach the page is decided first: off loopback without credentials it ends here, exit status 2
    access = launch_access(opt.host, opt.auth_file, opt.ssl_certfile, opt.ssl_keyfile)
    scorer = Scorer(opt)
    root = tempfile.mkdtemp(prefix="coreecho-app-")
    # Gradio reads these when a page is made and launched: uploads and outputs in the folder removed at the end;
    # no analytics, no version check (nothing leaves the machine)
    os.environ.update(GRADIO_TEMP_DIR=os.path.join(root, "gradio"), GRADIO_ANALYTICS_ENABLED="False")
    global gr
    try:
        gr = importlib.import_module("gradio")
        jobs = SessionJobs(Path(root, "jobs"), opt.jobs_per_session, opt.max_jobs, 60 * opt.job_ttl_min)
        page = Page(scorer, jobs, example_video(root)).blocks
        print(f"Model {opt.pretrained_weights} ({opt.model}, clips of {opt.frames} frames every {opt.frequency}), "
              f"device {scorer.device}, AMP {scorer.amp or 'off'}", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: the folder is removed
        page.queue(default_concurrency_limit=1).launch(
            server_name=opt.host, server_port=opt.port, share=False, max_file_size=f"{opt.max_upload_mb}mb",
            allowed_paths=[root], ssr_mode=False, run_history=False, mcp_server=False, footer_links=[], css=CSS,
            show_error=False, inbrowser=False, auth_message="CoReEcho: log in with your team's credentials",
            **access)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def cli():
    raise SystemExit(main())


if __name__ == "__main__":
    run_main(cli)
