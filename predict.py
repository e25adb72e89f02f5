"""Score your own echocardiogram videos (AVI/MP4/MOV/MKV or DICOM) with a trained CoReEcho model.

    python predict.py --pretrained_weights best.pth --model uniformer_small --output results/ef.csv \
        videos/ study/IM0001 "more/**/*.dcm"

Inputs are files, folders (searched recursively) or glob patterns. Weights are a local checkpoint or
hf://OWNER/REPO/FILE (fetched once into the Hugging Face cache; HF_HUB_OFFLINE=1 reads only the cache).

Every video is read by datasets.sources.any_video.load_echo_video: the moving ultrasound sector is cropped
(--crop auto; or none, or x,y,w,h), made square, resized to 112x112 and resampled to --target_fps
(50, the EchoNet rate; 0 keeps the source rate). Then it is cut into clips of --frames frames every
--frequency-th frame over the WHOLE video: starts 0, S, 2S, ... plus the last possible start, so the
end is covered (S = --clip_stride, default frames * frequency // 2). A video shorter than one clip is
zero-padded at the end as in training (said in the notes). Clips are normalised exactly as the
EchoNet datasets do, so an EchoNet AVI with --target_fps 0 gets the EF the test pipeline gives for the
same starts. The video's EF is the mean over its clips.

Writes OUT.csv (one row per input: file, ef, ef_std, n_clips, n_frames, fps, fps_used, crop, error,
notes), OUT.clips.csv (file, clip_start, ef) and OUT.log next to it; with --plot DIR one PNG per video
(EF per clip along the video, above a few of its frames). A file that cannot be read gets its reason in
`error` and no EF; the others are still scored, and the exit status is then 1.
"""
import argparse
import os
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from datasets.sources.any_video import DEFAULT_FPS, expand_inputs, parse_crop
from datasets.clips import default_clip_stride
from datasets.sources.video_files import VideoFileClips, keep_item
from models import build_model
from utils.script.cli import on_interrupt, run_main
from utils.engine.distributed import init_distributed
from utils.script.errors import BadInputError
from utils.evaluation.inference import infer_videos
from utils.files.atomic import atomic_open, check_writable_folder
from utils.script.log import setup_logger
from utils.script.options import add_model_args, parser_with_defaults, positive_int
from utils.pictures.plots import save_figure, video_ef_figure
from utils.engine.amp import amp_dtype

PREVIEW_FRAMES = 4  # frames shown under the EF curve of --plot
CSV_COLUMNS = ["file", "ef", "ef_std", "n_clips", "n_frames", "fps", "fps_used", "crop", "error", "notes"]


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def parse_option(argv=None):
    parser = parser_with_defaults("predict.py",
                                  "Predict the ejection fraction of echocardiogram videos with a CoReEcho model")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files (AVI/MP4/MOV/MKV/DICOM), folders (recursive) or glob patterns")
    parser.add_argument("--pretrained_weights", type=str, required=True,
                        help="a CoReEcho checkpoint (best.pth of either stage): a path or hf://OWNER/REPO/FILE")
    parser.add_argument("--output", type=str, default="predictions.csv",
                        help="per-video CSV; OUT.clips.csv (per clip) and OUT.log go beside it")
    add_model_args(parser, frames=36, frequency=4)  # the paper's clip shape unless told otherwise
    parser.add_argument("--crop", type=str, default="auto",
                        help="auto = the moving ultrasound sector, none = whole frame, or a box x,y,w,h in pixels")
    parser.add_argument("--target_fps", type=non_negative_float, default=DEFAULT_FPS,
                        help="resample every video to this frame rate (nearest frame); 0 keeps the source rate")
    parser.add_argument("--clip_stride", type=positive_int, default=None,
                        help="frames between clip starts (default: frames * frequency // 2)")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="clips per forward pass on a GPU (a CPU runs one clip at a time)")
    parser.add_argument("--plot", type=str, default=None, metavar="DIR",
                        help="also save one PNG per video: EF per clip along the video over a few frames")
    return parser.parse_args(argv)


def load_scorer(opt, device):
    """(model, regressor, Weights) of --pretrained_weights (a CoReEcho checkpoint), on `device`, in eval mode."""
    model, regressor, weights = build_model(opt.model, opt.pretrained_weights, kinds=("coreecho",),
                                            depthwise=opt.depthwise)
    model, regressor = model.to(device).eval(), regressor.to(device).eval()
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model, regressor, weights


def video_clips(opt, paths, preview=0):
    """The dataset of every grid clip of each file, read and prepared as the options say."""
    stride = opt.clip_stride or default_clip_stride(opt.frames, opt.frequency)
    return VideoFileClips(paths, opt.frames, opt.frequency, stride, parse_crop(opt.crop), opt.target_fps,
                          preview=preview)


def score_videos(opt, model, regressor, dataset, device, amp):
    """(item, clip EF float64 [n_clips]) of every video of `dataset`, in order: the one scoring path of predict.py
    and of the web page. GPU: the clips of several videos per forward (--batch_size clips); CPU: one at a time."""
    # one video per item; results do not depend on the number of workers (nothing random, order kept)
    loader = DataLoader(dataset, batch_size=None, num_workers=opt.num_workers, collate_fn=keep_item,
                        pin_memory=device.type == "cuda")
    for item, _, clip_ef in infer_videos(model, loader, device, regressor, amp, opt.channels_last,
                                         max_clips=opt.batch_size):
        yield item, clip_ef.astype(np.float64)


def csv_row(item, clip_ef):
    """The video's row of OUT.csv (CSV_COLUMNS)."""
    if item["error"]:
        return {"file": item["path"], "n_clips": 0, "error": item["error"]}
    fps, used = item["fps"], item["fps_used"]
    return {"file": item["path"], "ef": clip_ef.mean(), "ef_std": clip_ef.std(), "n_clips": len(clip_ef),
            "n_frames": item["n_frames"], "fps": f"{fps:g}" if fps else "", "fps_used": f"{used:g}" if used else "",
            "crop": item["crop"], "error": "", "notes": "; ".join(item["notes"])}


def log_video(log, k, item, clip_ef):
    path = item["path"]
    if item["error"]:
        log.warning(f"{k} {path}: FAILED: {item['error']}")
        if item["traceback"]:
            log.warning(item["traceback"].rstrip())
        return
    fps, used = item["fps"], item["fps_used"]
    rate = (f"{fps:g} fps found" if fps else "no frame rate found") + \
        (f", {used:g} fps used" if used else ", frames used as they are")
    log.info(f"{k} {path}: {rate}; crop {item['crop'] or 'none (already 112x112)'}; {item['n_frames']} frames, "
             f"{len(clip_ef)} clip(s): EF {clip_ef.mean():.1f} % (clip SD {clip_ef.std():.1f})")
    for note in item["notes"]:
        log.info(f"    {note}")


def log_settings(log, opt, weights, device, amp, n_videos):
    source = "" if weights.path == opt.pretrained_weights else f" ({weights.path})"
    log.info(f"Checkpoint {opt.pretrained_weights}{source}, epoch {weights.content.get('epoch')}, {opt.model}; "
             f"device {device}, AMP {amp or 'off (fp32)'}")
    trained = weights.content.get("opt")
    if trained is not None and (getattr(trained, "frames", opt.frames), getattr(trained, "frequency", opt.frequency)) \
            != (opt.frames, opt.frequency):
        log.warning(f"the checkpoint was trained on clips of {trained.frames} frames every {trained.frequency}, "
                    f"this run uses {opt.frames} every {opt.frequency}")
    stride = opt.clip_stride or default_clip_stride(opt.frames, opt.frequency)
    log.info(f"{n_videos} video(s); clips of {opt.frames} frames every {opt.frequency} frame(s), a clip every "
             f"{stride} frames over the whole video; crop {opt.crop}; frame rate "
             f"{f'{opt.target_fps:g} fps' if opt.target_fps else 'kept (no resampling)'}")


def main(argv=None):
    opt = parse_option(argv)
    dist = init_distributed(opt.device)
    if dist.enabled:
        raise BadInputError("predict.py runs as a single process: start it with python, not torchrun")
    amp = amp_dtype(opt.amp, dist.device)
    # inputs and weights first: a wrong path fails here, before anything is written
    parse_crop(opt.crop)
    videos = expand_inputs(opt.inputs)
    if os.path.isdir(opt.output):
        raise BadInputError(f"--output {opt.output} is a folder; give the CSV file to write, e.g. "
                            f"{os.path.join(opt.output, 'ef.csv')}")
    model, regressor, weights = load_scorer(opt, dist.device)

    out_csv = os.path.abspath(opt.output)
    stem = out_csv[:-len(".csv")] if out_csv.lower().endswith(".csv") else out_csv
    clips_csv, log_file = stem + ".clips.csv", stem + ".log"
    check_writable_folder(os.path.dirname(out_csv))
    if opt.plot:
        check_writable_folder(opt.plot)
    log = setup_logger(log_file)
    log_settings(log, opt, weights, dist.device, amp, len(videos))
    # --plot: name each PNG by the file's path below the inputs' common folder, so names never collide
    common = os.path.commonpath([os.path.dirname(os.path.abspath(v)) for v in videos])

    rows, clip_rows = [], []
    on_interrupt(lambda: f"interrupted after {len(rows)} of {len(videos)} videos; {opt.output} was not written; "
                         "rerun the same command")
    start = time.perf_counter()
    dataset = video_clips(opt, videos, preview=PREVIEW_FRAMES if opt.plot else 0)
    for item, clip_ef in score_videos(opt, model, regressor, dataset, dist.device, amp):
        log_video(log, f"[{len(rows) + 1}/{len(videos)}]", item, clip_ef)
        rows.append(csv_row(item, clip_ef))
        path, starts = item["path"], item["starts"].numpy()
        clip_rows.extend({"file": path, "clip_start": int(s), "ef": e} for s, e in zip(starts, clip_ef))
        if opt.plot and not item["error"]:
            name = os.path.relpath(os.path.abspath(path), common).replace(os.sep, "__") + ".png"
            save_figure(video_ef_figure(starts, clip_ef, item["preview"].numpy(), item["preview_indexes"].numpy(),
                                        title=os.path.basename(path)), os.path.join(opt.plot, name))
    seconds = time.perf_counter() - start

    table = pd.DataFrame(rows, columns=CSV_COLUMNS).astype({"n_clips": "int64", "n_frames": "Int64"})
    with atomic_open(out_csv, "w") as f:
        table.to_csv(f, index=False, float_format="%.5f")
    with atomic_open(clips_csv, "w") as f:
        pd.DataFrame(clip_rows, columns=["file", "clip_start", "ef"]).to_csv(f, index=False, float_format="%.5f")
    failed = int((table["error"] != "").sum())
    n_clips = int(table["n_clips"].sum())
    log.info(f"{len(table) - failed} of {len(table)} videos scored ({n_clips} clips) in {seconds:.1f} s "
             f"({len(table) / seconds:.2f} videos/s)" + (f"; {failed} FAILED (see the error column)" if failed else ""))
    log.info(f"Saved {out_csv}, {os.path.basename(clips_csv)} and {os.path.basename(log_file)}"
             + (f"; figures in {opt.plot}" if opt.plot else ""))
    return 1 if failed else 0


def cli():
    """Exit status 1 when any input failed (its row says why), 0 when all were scored."""
    raise SystemExit(main())


if __name__ == "__main__":
    run_main(cli)
