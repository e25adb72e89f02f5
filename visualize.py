"""See what a CoReEcho model learned (usage, outputs and labels: README, "See what the model learned").

    python visualize.py embeddings --data_folder EchoNet-Dynamic --pretrained_weights a/best.pth b/best.pth \
        --path_test_start_indexes test_start_indexes.pkl --model uniformer_small --output_dir vis/
    python visualize.py cam --pretrained_weights best.pth --model uniformer_small --output_dir cam/ VIDEO ...

`embeddings`: every video of a split embedded with each checkpoint (mean over its test clips, or all its clips),
or read from --embeddings files; writes OUT/<label>/embeddings.npz, embeddings.png (UMAP / t-SNE coloured by EF)
and representation.json / .csv (how well each one is ordered by EF: utils/evaluation/representation.py).
`cam`: Grad-CAM of the predicted EF for clips of any video predict.py reads; writes OUT/<name>_cam.mp4 / .png and
cam.csv. Clips of --frames 36 every --frequency 4 (the paper's) unless told otherwise.
"""
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from datasets import EchoNetAllClips, EchoNetTest, decode_video, num_starts
from datasets.clips import cut_clips, denormalise
from datasets.sources.any_video import DEFAULT_FPS, expand_inputs, load_echo_video, parse_crop
from datasets.video import SIZE
from models import build_model, load_weights, place_model, read_weights, require_kind
from utils.evaluation import projection
from utils.evaluation.grad_cam import grad_cam
from utils.pictures.cam import save_cam_strip, write_cam_video
from utils.script.cli import on_interrupt, run_main
from utils.engine.distributed import init_distributed
from utils.files.embeddings_file import load_embeddings, save_embeddings
from utils.script.errors import BadInputError, UserError
from utils.evaluation.inference import InferenceSettings, predict
from utils.files.atomic import atomic_open, atomic_write_json, check_writable_folder
from utils.script.log import setup_logger
from utils.evaluation.metrics import regression_metrics
from models.options import add_data_and_model_args, add_model_args
from models.settings import conflict, fill_options
from utils.script.options import HelpWithDefaults, parser_with_defaults
from utils.script.validators import non_negative_int, positive_int
from utils.evaluation.projection import METHOD_NAMES
from utils.pictures.plots import checkpoint_embedding_figure, save_figure
from utils.evaluation.representation import format_representation_metrics, representation_metrics
from utils.engine.amp import amp_dtype
from utils.files.weights import weights_label

PAPER_CLIP = {"frames": 36, "frequency": 4}  # the clip the paper trains and tests on
CSV_COLUMNS = ["label", "n_videos", "split", "clips", "spearman", "knn_mae", "bin_ratio", "prediction_mae", "source"]


def start_list(text):
    """'0,40,80' -> [0, 40, 80]: one value, so the video paths after it are never taken for starts."""
    starts = [non_negative_int(part.strip()) for part in text.split(",")]
    return list(dict.fromkeys(starts))


def parse_option(argv=None):
    parser = parser_with_defaults("visualize.py", "What a CoReEcho model learned: embedding maps and ordering "
                                                  "numbers per checkpoint, Grad-CAM of the predicted EF")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{embeddings,cam}")

    def subparser(name, text):
        return commands.add_parser(name, help=text, description=text,
                                   formatter_class=HelpWithDefaults)

    embeddings = subparser("embeddings", "embed a split with each checkpoint: UMAP / t-SNE maps coloured by EF "
                                         "and the distance-EF Spearman, kNN MAE and bin ratio of each")
    add_data_and_model_args(embeddings, **PAPER_CLIP, from_checkpoint=True)  # the first checkpoint's, else these
    # Both flags fill one list, so the figure's rows follow the command line.
    embeddings.add_argument("--pretrained_weights", dest="sources", action="extend", nargs="+", metavar="CKPT",
                            type=lambda path: ("checkpoint", path), help="checkpoints to embed the split with")
    embeddings.add_argument("--embeddings", dest="sources", action="extend", nargs="+", metavar="NPZ",
                            type=lambda path: ("embeddings", path),
                            help="embeddings.npz files to show as they are (nothing is recomputed)")
    embeddings.add_argument("--output_dir", type=str, required=True)
    embeddings.add_argument("--split", type=str, default="test", choices=("test", "val", "train", "all"))
    embeddings.add_argument("--clips", type=str, default="three", choices=("three", "all"),
                            help="a video's embedding is the mean over its three test clips, or over all its "
                                 "clips on predict.py's grid")
    embeddings.add_argument("--path_test_start_indexes", type=str, default=None,
                            help="--clips three: released test_start_indexes.pkl (or .json/.csv); drawn with "
                                 "--seed if omitted")
    embeddings.add_argument("--n_clips", type=positive_int, default=3, help="clips per video when starts are drawn")
    embeddings.add_argument("--seed", type=non_negative_int, default=0, help="seed for drawn starts")
    embeddings.add_argument("--clip_stride", type=positive_int, default=None,
                            help="--clips all: frames between clip starts (default: frames * frequency // 2)")
    embeddings.add_argument("--batch_size", type=positive_int, default=8, help="videos per forward pass")
    embeddings.add_argument("--methods", nargs="+", choices=tuple(METHOD_NAMES), default=None,
                            help="maps per checkpoint (default: umap tsne; tsne alone without umap-learn)")

    cam = subparser("cam", "Grad-CAM of the predicted EF for one clip of each video (runs in fp32, one clip at a "
                           "time: --amp, --channels_last and --num_workers do not apply)")
    cam.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="video files (EchoNet AVI, MP4/MOV/MKV, DICOM), folders (recursive) or glob patterns")
    cam.add_argument("--pretrained_weights", type=str, required=True, help="a stage-1 or stage-2 checkpoint")
    cam.add_argument("--output_dir", type=str, required=True)
    add_model_args(cam, **PAPER_CLIP, from_checkpoint=True)
    cam.add_argument("--starts", "--start", type=start_list, default=[0], metavar="S[,S...]",
                     help="first frame of each clip shown, e.g. --start 40 or --starts 0,40,80 (one video and one "
                          "PNG per start)")
    cam.add_argument("--crop", type=str, default="auto",
                     help="videos other than 112x112 AVIs: auto = the moving ultrasound sector, none = whole "
                          "frame, or a box x,y,w,h in pixels (as predict.py)")
    cam.add_argument("--target_fps", type=float, default=DEFAULT_FPS,
                     help="videos other than 112x112 AVIs: resample to this frame rate; 0 keeps the source rate")

    opt = parser.parse_args(argv)
    if opt.command == "embeddings" and not opt.sources:
        embeddings.error("give --pretrained_weights CKPT ... and/or --embeddings FILE.npz ...")
    return opt


def checkpoint_label(path):
    """'<parent folder>_<file stem>' of a path, with characters unsafe in a folder name replaced by '_'."""
    path = os.path.abspath(os.fspath(path))
    parent, stem = os.path.basename(os.path.dirname(path)), Path(path).stem
    return re.sub(r"[^\w.+=-]+", "_", f"{parent}_{stem}" if parent else stem)


def file_label(data):
    """An embeddings file is labelled after the checkpoint it was computed with (else after the file itself)."""
    checkpoint = data["meta"]["checkpoint"]
    return checkpoint_label(checkpoint if isinstance(checkpoint, str) and checkpoint else data["path"])


def unique(names):
    """The names with _2, _3, ... added to repeats so that no two are equal."""
    taken, result = set(), []
    for name in names:
        candidate, k = name, 1
        while candidate in taken:
            k += 1
            candidate = f"{name}_{k}"
        taken.add(candidate)
        result.append(candidate)
    return result


def json_number(value):
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass
class EmbeddingJob:
    """What `embeddings` works with, all read and checked before anything is computed or written."""
    dist: object
    amp: object
    methods: list
    loaded: dict  # embeddings file -> its content (utils/files/embeddings_file.py)
    labels: list  # one per source, in the command line's order
    dataset: object = None  # the split, when there are checkpoints to embed it with
    model: object = None
    regressor: object = None
    weights: dict = field(default_factory=dict)  # checkpoint -> models.Weights
    log: object = None


def map_methods(opt):
    """The maps asked for: --methods, or UMAP and t-SNE (t-SNE alone without umap-learn)."""
    if opt.methods is None:
        return ["umap", "tsne"] if projection.umap_installed() else ["tsne"]
    methods = list(dict.fromkeys(opt.methods))
    if "umap" in methods and not projection.umap_installed():
        raise BadInputError("--methods umap needs umap-learn, which is not installed: pip install umap-learn "
                            "(or --methods tsne)")
    return methods


def embedding_dataset(opt):
    if opt.clips == "three":
        return EchoNetTest(opt.data_folder, opt.split, opt.frames, opt.frequency, opt.path_test_start_indexes,
                           n_clips=opt.n_clips, seed=opt.seed, cache_dir=opt.cache_dir)
    return EchoNetAllClips(opt.data_folder, opt.split, opt.frames, opt.frequency, opt.clip_stride,
                           cache_dir=opt.cache_dir)


def read_embedding_inputs(opt):
    """An EmbeddingJob (without its log): a wrong path or file fails here, before anything is computed or written."""
    dist = init_distributed(opt.device)
    if dist.enabled:
        raise BadInputError("visualize.py runs as a single process; for a multi-GPU pass run "
                            "test_with_three_clips.py --save_embeddings under torchrun and pass its file with "
                            "--embeddings")
    methods = map_methods(opt)
    amp = amp_dtype(opt.amp, dist.device)
    loaded = {path: load_embeddings(path) for kind, path in opt.sources if kind == "embeddings"}
    checkpoints = [path for kind, path in opt.sources if kind == "checkpoint"]
    labels = unique([checkpoint_label(path) if kind == "checkpoint" else file_label(loaded[path])
                     for kind, path in opt.sources])
    job = EmbeddingJob(dist, amp, methods, loaded, labels)
    if checkpoints:  # one model and clip shape for all: the flags', else the first checkpoint's
        job.weights = {path: read_weights(path) for path in checkpoints}
        fill_options(opt, job.weights[checkpoints[0]], {"model": "uniformer_small", **PAPER_CLIP})
        job.dataset = embedding_dataset(opt)
        model, regressor, _ = build_model(opt.model, None, depthwise=opt.depthwise)
        for path in checkpoints:  # each one is a CoReEcho checkpoint that fits the model (or names the --model)
            require_kind(job.weights[path], ("coreecho",))
            load_weights(model, regressor, job.weights[path])
        job.model = place_model(model, dist.device, opt.channels_last)
        job.regressor = place_model(regressor, dist.device)
    return job


def read_embeddings_file(job, path, label):
    """The content of an embeddings file given with --embeddings (read already), logged; (data, file)."""
    data = job.loaded[path]
    meta = data["meta"]
    job.log.info(f"{label}: {len(data['names'])} videos read from {path} (split '{meta['split']}', "
                 f"{meta['clips']} clips of {meta['frames']} frames every {meta['frequency']}; checkpoint "
                 f"{meta['checkpoint']})")
    return data, path


def embedding_meta(opt, job, path):
    """What OUT/<label>/embeddings.npz says about how it was computed."""
    epoch = job.weights[path].content.get("epoch")
    meta = {"checkpoint": weights_label(path), "epoch": None if epoch is None else int(epoch), "model": opt.model,
            "split": opt.split, "frames": opt.frames, "frequency": opt.frequency, "clips": opt.clips,
            "written_by": "visualize.py embeddings"}
    if opt.clips == "three":
        meta.update(n_clips=job.dataset.n_clips, start_indexes=os.path.abspath(opt.path_test_start_indexes)
                    if opt.path_test_start_indexes else f"drawn with seed {opt.seed}")
    else:
        meta.update(clip_stride=job.dataset.clip_stride)
    return meta


def embed_checkpoint(opt, job, path, label):
    """Embed the split with one checkpoint and save OUT/<label>/embeddings.npz; (data, file)."""
    load_weights(job.model, job.regressor, job.weights[path])
    contradiction = conflict(opt, job.weights[path])  # one clip shape for all checkpoints: the first one's
    if contradiction:
        job.log.warning(contradiction)
    start = time.perf_counter()
    settings = InferenceSettings(job.amp, opt.channels_last, max_videos=opt.batch_size, num_workers=opt.num_workers)
    result = predict(job.model, job.regressor, job.dataset, job.dist, settings)
    meta = embedding_meta(opt, job, path)
    data = {"names": result["names"], "ef": result["labels"], "embeddings": result["embeddings"],
            "predictions": result["predictions"], "meta": meta}
    npz = save_embeddings(os.path.join(opt.output_dir, label, "embeddings.npz"), data["names"], data["ef"],
                          data["embeddings"], data["predictions"], meta)
    job.log.info(f"{label}: {path} (epoch {meta['epoch']}) embedded {len(data['names'])} videos in "
                 f"{time.perf_counter() - start:.1f} s -> {npz}")
    return data, npz


def representation_row(job, label, path, data, npz):
    """How well one source's embeddings are ordered by EF, logged: its row of representation.csv / .json."""
    if len(data["names"]) < 2 or not np.isfinite(data["embeddings"]).all():
        raise BadInputError(f"{npz}: needs at least 2 videos with finite embeddings (a diverged checkpoint?)")
    numbers = representation_metrics(data["embeddings"], data["ef"])
    prediction_mae = regression_metrics(data["predictions"], data["ef"])["mae"]
    job.log.info(f"{label}: {format_representation_metrics(numbers)}  prediction MAE {prediction_mae:.3f}")
    meta = data["meta"]
    return {"label": label, "n_videos": len(data["names"]), "split": meta["split"], "clips": meta["clips"],
            **numbers, "prediction_mae": prediction_mae, "source": weights_label(path),
            "embeddings_file": os.path.abspath(npz), "checkpoint": meta["checkpoint"]}


def write_representation(opt, job, rows):
    """The table of every source, in the log, representation.csv and representation.json."""
    table = pd.DataFrame(rows)
    job.log.info("Embeddings ordered by EF (Spearman: higher is better; kNN MAE and bin ratio: lower is better):\n"
                 + table[["label", "n_videos", "spearman", "knn_mae", "bin_ratio", "prediction_mae"]].to_string(
                     index=False, float_format=lambda x: f"{x:.3f}"))
    with atomic_open(os.path.join(opt.output_dir, "representation.csv"), "w") as f:
        table[CSV_COLUMNS].to_csv(f, index=False, float_format="%.5f")
    atomic_write_json({"checkpoints": [{**row, **{key: json_number(row[key]) for key in
                                                  ("spearman", "knn_mae", "bin_ratio", "prediction_mae")}}
                                       for row in rows]}, os.path.join(opt.output_dir, "representation.json"))


def write_maps(opt, job, shown):
    """embeddings.png: each source's embeddings projected by each method, one row per source."""
    start = time.perf_counter()
    figure = checkpoint_embedding_figure([(label, projection.projections(data["embeddings"], job.methods),
                                           data["ef"]) for label, data in shown])
    save_figure(figure, os.path.join(opt.output_dir, "embeddings.png"))
    job.log.info(f"{' and '.join(METHOD_NAMES[m] for m in job.methods)} maps in {time.perf_counter() - start:.1f} s; "
                 f"saved in {opt.output_dir}: embeddings.png, representation.json, representation.csv, visualize.log"
                 + "".join(f", {label}/embeddings.npz" for (kind, _), label in zip(opt.sources, job.labels)
                           if kind == "checkpoint"))


def embeddings_main(opt):
    job = read_embedding_inputs(opt)
    check_writable_folder(opt.output_dir)
    job.log = setup_logger(os.path.join(opt.output_dir, "visualize.log"))
    progress = {"label": None}
    on_interrupt(lambda: f"interrupted while embedding with {progress['label']}; the files already written in "
                         f"{opt.output_dir} are complete; rerun the same command")
    if job.dataset is not None:
        how = (f"the mean of {job.dataset.n_clips} fixed clips per video" if opt.clips == "three" else
               f"the mean of all clips per video (a clip every {job.dataset.clip_stride} frames)")
        job.log.info(f"Split '{opt.split}' of {opt.data_folder}: {len(job.dataset)} videos; clips of {opt.frames} "
                     f"frames every {opt.frequency}; a video's embedding is {how}; device {job.dist.device}, "
                     f"AMP {job.amp or 'off (fp32)'}")

    shown, rows = [], []
    for (kind, path), label in zip(opt.sources, job.labels):
        progress["label"] = label
        if kind == "embeddings":
            data, npz = read_embeddings_file(job, path, label)
        else:
            data, npz = embed_checkpoint(opt, job, path, label)
        rows.append(representation_row(job, label, path, data, npz))
        shown.append((label, data))

    if len({tuple(sorted(data["names"])) for _, data in shown}) > 1:
        job.log.warning("the rows hold different sets of videos (another split or data folder?): compare their "
                        "numbers with care")
    write_representation(opt, job, rows)
    progress["label"] = "the maps"
    write_maps(opt, job, shown)
    return rows


def frame_size(path):
    """(width, height) from the container header, or None if OpenCV cannot open it."""
    capture = cv2.VideoCapture(os.fspath(path))
    try:
        if not capture.isOpened():
            return None
        return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()


def read_frames(path, crop, target_fps):
    """uint8 RGB frames [F, 112, 112, 3] of a video and how they were read: a 112x112 AVI (EchoNet) with the
    datasets' decoder, as the test pipeline reads it; anything else as predict.py reads it."""
    if Path(path).suffix.lower() == ".avi" and not isinstance(crop, tuple) and frame_size(path) == (SIZE, SIZE):
        return decode_video(path), "EchoNet AVI, frames as decoded"
    frames, info = load_echo_video(path, crop, target_fps)
    return frames, "; ".join([f"crop {info.crop_text or 'none'}", *info.notes])


def cam_main(opt):
    dist = init_distributed(opt.device)
    if dist.enabled:
        raise BadInputError("visualize.py runs as a single process: start it with python, not torchrun")
    crop = parse_crop(opt.crop)
    # inputs and weights first: a wrong path fails here, before anything is written
    videos = expand_inputs(opt.inputs)
    weights = read_weights(opt.pretrained_weights)
    require_kind(weights, ("coreecho",))
    fill_options(opt, weights, {"model": "uniformer_small", **PAPER_CLIP})
    model, regressor, weights = build_model(opt.model, weights, depthwise=opt.depthwise)
    checkpoint = weights.content
    model, regressor = place_model(model, dist.device), place_model(regressor, dist.device)

    check_writable_folder(opt.output_dir)
    log = setup_logger(os.path.join(opt.output_dir, "visualize.log"))
    log.info(f"Checkpoint {opt.pretrained_weights} (epoch {checkpoint.get('epoch')}), {opt.model}, device "
             f"{dist.device}; {len(videos)} video(s), clips of {opt.frames} frames every {opt.frequency} at start(s) "
             f"{', '.join(map(str, opt.starts))}")
    contradiction = conflict(opt, weights)  # a flag that contradicts the checkpoint runs as asked
    if contradiction:
        log.warning(contradiction)
    rows = []
    on_interrupt(lambda: f"interrupted after {len(rows)} clip(s); their files in {opt.output_dir} are complete, "
                         "cam.csv was not written")
    for video, name in zip(videos, unique([Path(v).stem for v in videos])):
        try:
            frames, how = read_frames(video, crop, opt.target_fps)
            high = num_starts(len(frames), opt.frames, opt.frequency)
            late = [s for s in opt.starts if s >= high]
            if late:
                raise BadInputError(f"{video}: start {late[0]} is out of range [0, {high}) ({len(frames)} frames, "
                                    f"--frames {opt.frames}, --frequency {opt.frequency})")
        except UserError as e:  # one unreadable or too short video does not stop the others (as predict.py)
            message = " ".join(str(e).split())
            log.error(f"FAILED {message}")
            rows.append({"file": str(video), "start": None, "ef": None, "video": "", "png": "", "error": message})
            continue
        clips = cut_clips(frames, opt.starts, opt.frames, opt.frequency)
        for start, clip in zip(opt.starts, clips):
            stem = name if len(opt.starts) == 1 else f"{name}_start{start}"
            heat, ef = grad_cam(model, regressor, clip)
            frames = denormalise(clip)
            movie = write_cam_video(os.path.join(opt.output_dir, f"{stem}_cam.mp4"), frames, heat)
            strip = save_cam_strip(os.path.join(opt.output_dir, f"{stem}_cam.png"), frames, heat, n_frames=8,
                                   title=f"{Path(video).name}, clip at frame {start}: predicted EF {ef:.1f} %")
            log.info(f"{video} (clip at frame {start}; {how}): predicted EF {ef:.1f} % -> {os.path.basename(movie)}, "
                     f"{os.path.basename(strip)}")
            rows.append({"file": str(video), "start": start, "ef": ef, "video": os.path.basename(movie),
                         "png": os.path.basename(strip), "error": ""})
    table = pd.DataFrame(rows, columns=["file", "start", "ef", "video", "png", "error"]).astype({"start": "Int64"})
    with atomic_open(os.path.join(opt.output_dir, "cam.csv"), "w") as f:
        table.to_csv(f, index=False, float_format="%.4f")
    failed = sum(bool(row["error"]) for row in rows)
    log.info(f"Saved in {opt.output_dir}: {2 * (len(rows) - failed)} Grad-CAM files, cam.csv, visualize.log"
             + (f"; {failed} video(s) FAILED (see the error column of cam.csv)" if failed else ""))
    return rows


def main(argv=None):
    opt = parse_option(argv)
    return embeddings_main(opt) if opt.command == "embeddings" else cam_main(opt)


def cli():
    """`cam` exits with status 1 when any video failed (its row of cam.csv says why)."""
    rows = main()
    raise SystemExit(1 if any(isinstance(row, dict) and row.get("error") for row in rows or []) else 0)


if __name__ == "__main__":
    run_main(cli)
