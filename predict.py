"""Score your own echocardiogram videos (AVI/MP4/MOV/MKV or DICOM) with a trained CoReEcho model: a few files
or a whole archive of DICOM studies, on one process or on many GPUs / nodes with torchrun.

    python predict.py --pretrained_weights best.pth --model uniformer_small --output results/ef.csv \
        videos/ study/IM0001 "more/**/*.dcm" [--resume]
    torchrun --nproc_per_node 8 predict.py ...same arguments...

Inputs are files, folders (searched recursively) or glob patterns; weights a local checkpoint or
hf://OWNER/REPO/FILE. Each file is scored, skipped (not a cine loop, too short) or failed (scoring.archive_clips);
its EF is the mean over clips cut every --clip_stride frames over the whole video. Writes OUT.csv (one row per
input, in input order; with a familiarity reference also each file's distance to the training videos:
scoring.familiarity), OUT.clips.csv and OUT.log, row by row, and OUT.studies.csv (one EF per study:
scoring.studies) at the end: --resume skips the files already done. Under
torchrun rank 0 merges every rank's rows. Exit status 1 when a file failed, else 0. README ("Use a trained
model on your own videos", "Score an archive") tells the rest.
"""
import logging
import os
import time
from collections import Counter

import numpy as np

from datasets.clips import default_clip_stride
from datasets.sources.any_video import expand_inputs, parse_crop
from models.settings import conflict
from scoring.archive_clips import FAILED, SCORED, SKIPPED
from scoring.familiarity import add_reference_arg, content_identity, familiarity_note
from scoring.options import add_scoring_args, result_settings
from scoring.rank_sync import RankSync
from scoring.results_stream import ResultFiles, check_settings, read_rows, write_settings
from scoring.rows import CLIP_COLUMNS, CSV_COLUMNS
from scoring.scorer import PREVIEW_FRAMES, load_scorer, run_reference, scored_rows, video_clips
from scoring.studies import write_studies
from scoring.study_objects import decodable_syntaxes
from utils.engine.amp import amp_dtype
from utils.engine.distributed import cleanup, init_distributed
from utils.files.atomic import check_writable_folder
from utils.files.identity import file_stamp
from utils.script.cli import on_interrupt, run_main
from utils.script.errors import BadInputError
from utils.script.log import setup_logger
from utils.script.options import parser_with_defaults


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
    add_scoring_args(parser)  # the paper's clip shape unless told otherwise
    parser.set_defaults(num_workers=None)
    [workers] = [a for a in parser._actions if a.dest == "num_workers"]
    workers.help = "data-loader worker processes (None: the CPUs this process may use, shared by the processes " \
                   "of a machine under torchrun)"
    add_reference_arg(parser)
    parser.add_argument("--plot", type=str, default=None, metavar="DIR",
                        help="also save one PNG per video: EF per clip along the video over a few frames")
    return parser.parse_args(argv)


def log_video(log, k, item, clip_ef, row):
    path, status = item["path"], item["status"]
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
    crop = f"{item['crop']} ({item['crop_source']})" if item["crop"] else "none (already 112x112)"
    log.info(f"{k} {path}: {rate}; crop {crop}; {item['n_frames']} frames, {len(clip_ef)} clip(s): "
             f"EF {clip_ef.mean():.1f} % (clip SD {clip_ef.std():.1f})")
    for note in [*item["notes"], familiarity_note(row)]:
        if note:
            log.info(f"    {note}")


def log_settings(log, opt, weights, device, amp, n_videos):
    source = "" if weights.path == opt.pretrained_weights else f" ({weights.path})"
    log.info(f"Checkpoint {opt.pretrained_weights}{source}, epoch {weights.content.get('epoch')}, {opt.model}; "
             f"device {device}, AMP {amp or 'off (fp32)'}")
    contradiction = conflict(opt, weights)  # a flag that contradicts the checkpoint's settings runs as asked
    if contradiction:
        log.warning(contradiction)
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
    settings = result_settings(opt)
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
    model, regressor, amp, reference = scorer
    counts = Counter()
    rows, clip_rows = files.open(dist.rank)
    dataset = video_clips(opt, paths, preview=PREVIEW_FRAMES if opt.plot else 0)
    with rows, clip_rows:
        for item, clip_ef, row in scored_rows(opt, model, regressor, dataset, dist.device, amp, reference):
            counts[row["status"]] += 1
            log_video(log, f"[{sum(counts.values())}/{len(paths)}]", item, clip_ef, row)
            starts = item["starts"].numpy()
            for start, ef in zip(starts, clip_ef):
                clip_rows.write({"file": item["path"], "clip_start": int(start), "ef": ef})
            rows.write(row)  # last: a file counts as done once its clip rows are written
            if opt.plot and row["status"] == SCORED:
                from utils.pictures.plots import save_figure, video_ef_figure  # matplotlib: only with --plot
                name = os.path.relpath(os.path.abspath(item["path"]), common).replace(os.sep, "__") + ".png"
                save_figure(video_ef_figure(starts, clip_ef, item["preview"].numpy(), item["preview_indexes"].numpy(),
                                            title=os.path.basename(item["path"]), note=familiarity_note(row)),
                            os.path.join(opt.plot, name))


def summarise(log, table, seconds, n_scored_now, files):
    counts = table["status"].value_counts()
    scored, skipped, failed = (int(counts.get(s, 0)) for s in (SCORED, SKIPPED, FAILED))
    n_clips = int(table["n_clips"].replace("", "0").astype(int).sum())
    log.info(f"{len(table)} files: {scored} scored ({n_clips} clips), {skipped} skipped, {failed} failed"
             + (" (see the error column)" if failed else "") + f"; this run: {n_scored_now} files in {seconds:.1f} s "
             f"({n_scored_now / max(seconds, 1e-9):.2f} files/s)")
    log.info(f"Saved {files.path}, {os.path.basename(files.detail_path)}, {os.path.basename(files.stem)}.studies.csv "
             f"and {os.path.basename(files.stem)}.log")
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
    reference, reference_notes = run_reference(opt, weights)
    # a resumed run keeps rows only when their distances come from the same reference
    opt.familiarity_reference = content_identity(reference.path) if reference else None
    files = ResultFiles(opt.output, CSV_COLUMNS, CLIP_COLUMNS)
    order = {path: i for i, path in enumerate(videos)}
    todo, kept = sync.from_main(lambda: prepare_outputs(opt, files, videos, order))
    log = rank_logger(files, dist)
    log_settings(log, opt, weights, dist.device, amp, len(videos))
    for level, line in reference_notes:
        getattr(log, level)(line)
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
    score_part(opt, (model, regressor, amp, reference), dist, mine, files, log, common)
    sync.barrier()
    if not dist.is_main:
        cleanup()
        return 0
    # every rank's rows, in input order (nothing to merge when everything was done already)
    table = files.rewrite(order) if todo else read_rows(files.path, CSV_COLUMNS)
    cleanup()
    if len(table) != len(videos):
        raise RuntimeError(f"{len(videos) - len(table)} file(s) have no row in {files.path}")
    write_studies(table, files.stem + ".studies.csv")  # from the merged rows: the same after --resume, torchrun
    return summarise(log, table, time.perf_counter() - start, len(todo), files)


def cli():
    """Exit status 1 when any input failed (its row says why), 0 when every file was scored or skipped."""
    raise SystemExit(main())


if __name__ == "__main__":
    run_main(cli)
