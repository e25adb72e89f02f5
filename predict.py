"""Score your own echocardiogram videos (AVI/MP4/MOV/MKV or DICOM) with a trained CoReEcho model: a few files
or a whole archive of DICOM studies, on one process or on many GPUs / nodes with torchrun.

    python predict.py --pretrained_weights best.pth --model uniformer_small --output results/ef.csv \
        videos/ study/IM0001 "more/**/*.dcm" [--resume]
    torchrun --nproc_per_node 8 predict.py ...same arguments...

Inputs are files, folders (searched recursively) or glob patterns. Weights are a local checkpoint or
hf://OWNER/REPO/FILE (fetched once into the Hugging Face cache; HF_HUB_OFFLINE=1 reads only the cache).

Each file is scored, skipped or failed (datasets.sources.archive_clips): a DICOM object that is not a cine
loop (no image, secondary capture, another modality, one frame) and any video under --min_frames frames or
--min_seconds seconds is skipped with its reason; a file that cannot be read fails. A loop is read by
datasets.sources.any_video.load_echo_video: the moving ultrasound sector is cropped (--crop auto; or none,
or x,y,w,h), made square, resized to 112x112 and resampled to --target_fps (50, the EchoNet rate; 0 keeps
the source rate). Then it is cut into clips of --frames frames every --frequency-th frame over the WHOLE
video: starts 0, S, 2S, ... plus the last possible start, so the end is covered (S = --clip_stride, default
frames * frequency // 2). A loop shorter than one clip is cut as --short_loops says (datasets.short_loops:
repeat, the default, measured best in benchmarks/RESULTS.md; pad as in training; fit). Clips are normalised
exactly as the EchoNet datasets do, so an EchoNet AVI with --target_fps 0 gets the EF the test pipeline gives
for the same starts. The video's EF is the mean over its clips.

Writes OUT.csv (one row per input, in input order: CSV_COLUMNS), OUT.clips.csv (file, clip_start, ef) and
OUT.log next to it; with --plot DIR one PNG per video. Rows are appended as each file finishes (a killed run
keeps every finished row); --resume skips the files already scored or skipped (same path, size and
modification time) and the final OUT.csv equals an uninterrupted run's. Under torchrun, rank r > 0 appends to
OUT.rank<r>.csv (and .clips.csv, .log) and rank 0 merges everything into OUT.csv at the end. The exit status
is 1 when a file failed (its `error` says why), else 0.
"""
import logging
import os
import time
from collections import Counter

import numpy as np
import torch
from torch.utils.data import DataLoader

from datasets.clips import default_clip_stride
from datasets.short_loops import POLICIES
from datasets.sources.any_video import DEFAULT_FPS, expand_inputs, parse_crop
from datasets.sources.archive_clips import FAILED, SCORED, SKIPPED, ArchiveClips, LoopRules
from datasets.sources.study_objects import IDENTITY_COLUMNS, decodable_syntaxes
from datasets.sources.video_files import keep_item
from models import build_model
from utils.engine.amp import amp_dtype
from utils.engine.distributed import cleanup, init_distributed
from utils.engine.rank_sync import RankSync
from utils.evaluation.inference import InferenceSettings, infer_videos
from utils.files.atomic import check_writable_folder
from utils.files.results_stream import StreamFiles, check_settings, file_stamp, read_rows, write_settings
from utils.script.cli import on_interrupt, run_main
from utils.script.errors import BadInputError
from utils.script.log import setup_logger
from models.options import add_model_args
from utils.script.options import parser_with_defaults
from utils.script.validators import non_negative_float, non_negative_int, positive_int

PREVIEW_FRAMES = 4  # frames shown under the EF curve of --plot
CSV_COLUMNS = ["file", "ef", "ef_std", "n_clips", "n_frames", "fps", "fps_used", "crop", "error", "notes", "status",
               *IDENTITY_COLUMNS, "file_size", "file_mtime_ns"]
CLIP_COLUMNS = ["file", "clip_start", "ef"]
RULES = LoopRules()  # the defaults of --short_loops, --min_frames, --min_seconds
# what a resumed run must share with the rows it keeps
RESULT_SETTINGS = ("pretrained_weights", "model", "frames", "frequency", "clip_stride", "crop", "target_fps",
                   "short_loops", "min_frames", "min_seconds", "amp", "depthwise")


def parse_option(argv=None):
    parser = parser_with_defaults("predict.py",
                                  "Predict the ejection fraction of echocardiogram videos with a CoReEcho model")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files (AVI/MP4/MOV/MKV/DICOM), folders (recursive) or glob patterns")
    parser.add_argument("--pretrained_weights", type=str, required=True,
                        help="a CoReEcho checkpoint (best.pth of either stage): a path or hf://OWNER/REPO/FILE")
    parser.add_argument("--output", type=str, default="predictions.csv",
                        help="per-video CSV; OUT.clips.csv (per clip) and OUT.log go beside it")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of OUT.csv whose file is unchanged (path, size, modification time) and "
                             "score only the others (failed ones again)")
    add_model_args(parser, frames=36, frequency=4)  # the paper's clip shape unless told otherwise
    parser.set_defaults(num_workers=None)
    [workers] = [a for a in parser._actions if a.dest == "num_workers"]
    workers.help = "data-loader worker processes (None: the CPUs this process may use, shared by the processes " \
                   "of a machine under torchrun)"
    parser.add_argument("--crop", type=str, default="auto",
                        help="auto = the moving ultrasound sector, none = whole frame, or a box x,y,w,h in pixels")
    parser.add_argument("--target_fps", type=non_negative_float, default=DEFAULT_FPS,
                        help="resample every video to this frame rate (nearest frame); 0 keeps the source rate")
    parser.add_argument("--clip_stride", type=positive_int, default=None,
                        help="frames between clip starts (default: frames * frequency // 2)")
    parser.add_argument("--short_loops", choices=POLICIES, default=RULES.short_loops,
                        help="a loop shorter than one clip: repeat it, pad it with black frames (as in training) "
                             "or fit the clip in it with a shorter sampling period")
    parser.add_argument("--min_frames", type=non_negative_int, default=RULES.min_frames,
                        help="skip videos of fewer source frames")
    parser.add_argument("--min_seconds", type=non_negative_float, default=RULES.min_seconds,
                        help="skip videos shorter than this (when their frame rate is known)")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="clips per forward pass on a GPU (a CPU runs one clip at a time)")
    parser.add_argument("--plot", type=str, default=None, metavar="DIR",
                        help="also save one PNG per video: EF per clip along the video over a few frames")
    return parser.parse_args(argv)


def default_workers() -> int:
    """The CPUs this process may use, divided among the processes torchrun starts on this machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def load_scorer(opt, device):
    """(model, regressor, Weights) of --pretrained_weights (a CoReEcho checkpoint), on `device`, in eval mode."""
    model, regressor, weights = build_model(opt.model, opt.pretrained_weights, kinds=("coreecho",),
                                            depthwise=opt.depthwise)
    model, regressor = model.to(device).eval(), regressor.to(device).eval()
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model, regressor, weights


def video_clips(opt, paths, preview=0):
    """The dataset of every grid clip of each file, read and prepared as the options say (ArchiveClips: each
    item scored, skipped or failed)."""
    stride = opt.clip_stride or default_clip_stride(opt.frames, opt.frequency)
    rules = LoopRules(getattr(opt, "short_loops", RULES.short_loops), getattr(opt, "min_frames", RULES.min_frames),
                      getattr(opt, "min_seconds", RULES.min_seconds))
    return ArchiveClips(paths, opt.frames, opt.frequency, stride, parse_crop(opt.crop), opt.target_fps,
                        preview=preview, rules=rules)


def score_videos(opt, model, regressor, dataset, device, amp):
    """(item, clip EF float64 [n_clips]) of every video of `dataset`, in order: the one scoring path of predict.py
    and of the web page. GPU: the clips of several videos per forward (--batch_size clips); CPU: one at a time."""
    workers = default_workers() if opt.num_workers is None else opt.num_workers
    # one video per item; results do not depend on the number of workers (nothing random, order kept)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=keep_item,
                        pin_memory=device.type == "cuda")
    settings = InferenceSettings(amp, opt.channels_last, max_clips=opt.batch_size)
    for item, _, clip_ef in infer_videos(model, loader, device, settings, regressor):
        yield item, clip_ef.astype(np.float64)


def csv_row(item, clip_ef):
    """The video's row of OUT.csv (CSV_COLUMNS; a column left out is empty). `error` says why a skipped or failed
    file was not scored; `status` which of the two it was."""
    status = item.get("status") or (FAILED if item["error"] else SCORED)
    row = {"file": item["path"], "n_clips": 0, "error": item["error"], "status": status, **item.get("identity", {}),
           "file_size": item.get("file_size"), "file_mtime_ns": item.get("file_mtime_ns")}
    if status != SCORED:
        return row
    fps, used = item["fps"], item["fps_used"]
    row.update(ef=clip_ef.mean(), ef_std=clip_ef.std(), n_clips=len(clip_ef), n_frames=item["n_frames"],
               fps=f"{fps:g}" if fps else "", fps_used=f"{used:g}" if used else "", crop=item["crop"],
               notes="; ".join(item["notes"]))
    return row


def log_video(log, k, item, clip_ef):
    path, status = item["path"], item.get("status") or (FAILED if item["error"] else SCORED)
    if status == SKIPPED:
        log.info(f"{k} {path}: skipped: {item['error']}")
        return
    if status == FAILED:
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
    log.info(f"{n_videos} file(s); clips of {opt.frames} frames every {opt.frequency} frame(s), a clip every "
             f"{stride} frames over the whole video; crop {opt.crop}; frame rate "
             f"{f'{opt.target_fps:g} fps' if opt.target_fps else 'kept (no resampling)'}; loops shorter than a clip: "
             f"{opt.short_loops}; skipped under {opt.min_frames} frames or {opt.min_seconds:g} s")
    try:
        found, missing = decodable_syntaxes()
    except ImportError:  # pydicom is imported only for DICOM
        log.info("pydicom is not installed: DICOM inputs will fail (pip install pydicom)")
        return
    log.info(f"compressed DICOM decoded here: {', '.join(found) or 'none'}"
             + (f"; not ({', '.join(missing)}: see README)" if missing else ""))


def prepare_outputs(opt, files, videos, order):
    """Rank 0, before scoring: start the outputs over, or on --resume keep the rows of unchanged files (scored
    or skipped; the files must have been scored with the same settings). -> (positions left to score, kept)"""
    check_writable_folder(os.path.dirname(files.path))
    if opt.plot:
        check_writable_folder(opt.plot)
    settings = {key: getattr(opt, key) for key in RESULT_SETTINGS}
    settings_file = files.stem + ".settings.json"
    if not opt.resume:
        files.remove_all()
        write_settings(settings_file, settings)
        return list(range(len(videos))), 0
    changed = check_settings(settings_file, settings)
    if changed:
        raise BadInputError(f"--resume: {files.path} was scored with other settings ({'; '.join(changed)}); rerun "
                            "with the same options, or without --resume to score every file again")
    write_settings(settings_file, settings)

    def stamp(path):
        try:
            return file_stamp(path)
        except OSError:  # gone since: scored again if listed again
            return None

    def unchanged(rows):
        same = [stamp(p) == (int(s or -1), int(t or -1)) for p, s, t in
                zip(rows["file"], rows["file_size"], rows["file_mtime_ns"])]
        return rows["status"].isin([SCORED, SKIPPED]).to_numpy() & np.array(same, dtype=bool)

    kept = set(files.rewrite(order, unchanged)["file"])
    return [i for i, path in enumerate(videos) if path not in kept], len(kept)


def rank_logger(files, dist):
    """Rank 0 logs to the console and OUT.log; rank r > 0 to OUT.rank<r>.log alone."""
    log = setup_logger(files.stem + (".log" if dist.is_main else f".rank{dist.rank}.log"))
    if not dist.is_main:
        log.handlers = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
    return log


def score_part(opt, scorer, dist, paths, files, log, common):
    """Score `paths` (this rank's part), appending each file's clip rows then its row to this rank's streams;
    --plot figures are named by the path below `common`, the folder of every input."""
    model, regressor, amp = scorer
    counts = Counter()
    rows, clip_rows = files.open(dist.rank)
    dataset = video_clips(opt, paths, preview=PREVIEW_FRAMES if opt.plot else 0)
    with rows, clip_rows:
        for item, clip_ef in score_videos(opt, model, regressor, dataset, dist.device, amp):
            row = csv_row(item, clip_ef)
            counts[row["status"]] += 1
            log_video(log, f"[{sum(counts.values())}/{len(paths)}]", item, clip_ef)
            starts = item["starts"].numpy()
            for start, ef in zip(starts, clip_ef):
                clip_rows.write({"file": item["path"], "clip_start": int(start), "ef": ef})
            rows.write(row)  # last: a file counts as done once its clip rows are written
            if opt.plot and row["status"] == SCORED:
                from utils.pictures.plots import save_figure, video_ef_figure  # matplotlib: only with --plot
                name = os.path.relpath(os.path.abspath(item["path"]), common).replace(os.sep, "__") + ".png"
                save_figure(video_ef_figure(starts, clip_ef, item["preview"].numpy(), item["preview_indexes"].numpy(),
                                            title=os.path.basename(item["path"])), os.path.join(opt.plot, name))


def summarise(log, table, seconds, n_scored_now, files):
    counts = table["status"].value_counts()
    scored, skipped, failed = (int(counts.get(s, 0)) for s in (SCORED, SKIPPED, FAILED))
    n_clips = int(table["n_clips"].replace("", "0").astype(int).sum())
    log.info(f"{len(table)} files: {scored} scored ({n_clips} clips), {skipped} skipped, {failed} failed"
             + (" (see the error column)" if failed else "") + f"; this run: {n_scored_now} files in {seconds:.1f} s "
             f"({n_scored_now / max(seconds, 1e-9):.2f} files/s)")
    log.info(f"Saved {files.path}, {os.path.basename(files.detail_path)} and {os.path.basename(files.stem)}.log")
    return 1 if failed else 0


def main(argv=None):
    opt = parse_option(argv)
    dist = init_distributed(opt.device)
    amp = amp_dtype(opt.amp, dist.device)
    parse_crop(opt.crop)  # inputs and weights first: a wrong path fails here, before anything is written
    if os.path.isdir(opt.output):
        raise BadInputError(f"--output {opt.output} is a folder; give the CSV file to write, e.g. "
                            f"{os.path.join(opt.output, 'ef.csv')}")
    sync = RankSync(dist)
    videos = sync.from_main(lambda: [str(v) for v in expand_inputs(opt.inputs)])
    model, regressor, weights = load_scorer(opt, dist.device)
    files = StreamFiles(opt.output, CSV_COLUMNS, CLIP_COLUMNS)
    order = {path: i for i, path in enumerate(videos)}
    todo, kept = sync.from_main(lambda: prepare_outputs(opt, files, videos, order))
    log = rank_logger(files, dist)
    log_settings(log, opt, weights, dist.device, amp, len(videos))
    if kept:
        log.info(f"--resume: {kept} file(s) already done, {len(todo)} left")
    mine = [videos[i] for i in todo[dist.rank::dist.world_size]]  # interleaved: every rank gets long and short
    kept_in = files.path + (" and the .rank<r>.csv files beside it" if dist.enabled else "")
    on_interrupt(lambda: f"interrupted: {files.rows_written()} of {len(videos)} files done, kept in {kept_in}; "
                         "rerun the same command with --resume to score the rest",
                 kept=lambda: f"{files.rows_written()} of {len(videos)} files done, kept in {kept_in}: rerun with "
                              "--resume to score the rest")
    # --plot names a figure by its path below the inputs' common folder, so names never collide
    common = os.path.commonpath([os.path.dirname(os.path.abspath(v)) for v in videos]) if videos else ""
    start = time.perf_counter()
    score_part(opt, (model, regressor, amp), dist, mine, files, log, common)
    sync.barrier()
    if not dist.is_main:
        cleanup()
        return 0
    # every rank's rows, in input order (nothing to merge when everything was done already)
    table = files.rewrite(order) if todo else read_rows(files.path, CSV_COLUMNS)
    cleanup()
    if len(table) != len(videos):
        raise RuntimeError(f"{len(videos) - len(table)} file(s) have no row in {files.path}")
    return summarise(log, table, time.perf_counter() - start, len(todo), files)


def cli():
    """Exit status 1 when any input failed (its row says why), 0 when every file was scored or skipped."""
    raise SystemExit(main())


if __name__ == "__main__":
    run_main(cli)
