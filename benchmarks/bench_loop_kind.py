"""What kind of loop is it, measured: the colour-flow rule (datasets/sources/colour_flow.py) on generated
greyscale and colour loops and on real files, and what the header and pixel checks cost per file beside the
model's time per clip on this CPU.

1. Generated loops (datasets/synthetic/colour_loops.py), 3 seeds each: greyscale plain, with an ECG strip and
   yellow text, MJPG-coded (an AVI round trip), GIF-dithered (PIL's adaptive palette), sepia-tinted; colour
   Doppler and power Doppler boxes over 1-20 % of the sector, plain, MJPG-coded and GIF-dithered. The coloured
   share is measured in the sector's box (the crop a region or the auto crop gives); errors are counted for a
   grid of chroma and share thresholds.
2. Real files: pydicom's ultrasound examples and ../shared/data/real_ultrasound: the share in the crop (the 2D
   tissue region when there is one, else the whole frame), and what predict.py decides for each file.
3. Cost: screen_dicom (header: ImageType, regions), the colour meter per frame, a model forward per clip.

    python benchmarks/bench_loop_kind.py [--threads 2] [--models uniformer_tiny uniformer_small]
"""
import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets.sources.colour_flow import CHROMA_MIN, MAX_COLOURED_FRACTION, ColourMeter  # noqa: E402
from datasets.sources.ultrasound_regions import read_regions, tissue_crop  # noqa: E402
from datasets.synthetic import colour_loops as loops  # noqa: E402
from models import get_feature_extractor  # noqa: E402
from scoring.archive_clips import ArchiveClips, ShortLoopSettings  # noqa: E402
from scoring.study_objects import quiet_pydicom, screen_dicom  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_ultrasound"
PYDICOM_US = ["examples_ybr_color.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
              "ExplVR_BigEnd.dcm"]
CHROMAS, SHARES = (32, 48, 64), (0.005, 0.01, 0.02)


def mjpg(frames):
    """The loop after an MJPG AVI round trip (codec chroma noise)."""
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/loop.avi"
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, frames.shape[2:0:-1])
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        capture, out = cv2.VideoCapture(path), []
        while True:
            ok, bgr = capture.read()
            if not ok:
                return np.stack(out)
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def gif(frames):
    """The loop through a 256-colour GIF palette with Floyd-Steinberg dithering (as GIF exports are made)."""
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(buffer, "GIF")
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(out)


def generated_cases(seeds=3):
    """(name, is colour flow, frames) of every generated loop."""
    greys = {"grey": lambda f: f, "grey+ECG+text": lambda f: loops.add_text(loops.add_ecg(f)),
             "grey MJPG": mjpg, "grey GIF": gif, "grey sepia": loops.tint}
    for seed in range(seeds):
        for name, make in greys.items():
            yield name, False, make(loops.grey_loop(np.random.default_rng(seed)))
        for share in (0.01, 0.02, 0.05, 0.1, 0.2):
            for power in (False, True):
                rng = np.random.default_rng(100 + seed)
                flow = loops.add_flow(loops.add_ecg(loops.grey_loop(rng)), rng, share, power)
                kind = f"{'power' if power else 'colour'} {share:.0%}"
                for coding, code in (("", lambda f: f), (" MJPG", mjpg), (" GIF", gif)):
                    yield kind + coding, True, code(flow.copy())


def share_in(frames, box, chroma_min):
    meter = ColourMeter(chroma_min)
    for frame in frames:
        meter.add(frame)
    return meter.fraction(box)


def bench_generated():
    box = loops.sector_box()
    shares, truth, names = {c: [] for c in CHROMAS}, [], []
    for name, colour, frames in generated_cases():
        names.append(name)
        truth.append(colour)
        for chroma in CHROMAS:
            shares[chroma].append(share_in(frames, box, chroma))
    truth = np.array(truth)
    print(f"\n1. generated loops ({len(truth)}: {(~truth).sum()} greyscale, {truth.sum()} colour), coloured share of "
          f"the crop at chroma >= {CHROMA_MIN} (median over seeds):")
    chosen = np.array(shares[CHROMA_MIN])
    for name in dict.fromkeys(names):
        picked = chosen[[n == name for n in names]]
        print(f"   {name:<16} {100 * np.median(picked):6.2f} %")
    print("   errors (greyscale called colour / colour called greyscale) by chroma and share threshold:")
    for chroma in CHROMAS:
        cells = []
        for limit in SHARES:
            called = np.array(shares[chroma]) > limit
            cells.append(f"share > {limit:.1%}: {(called & ~truth).sum()} / {(~called & truth).sum()}")
        print(f"   chroma >= {chroma}: " + "; ".join(cells))
    grey_max = chosen[~truth].max()
    colour_min = chosen[truth].min()
    print(f"   at the chosen thresholds: largest greyscale share {100 * grey_max:.2f} %, smallest colour share "
          f"{100 * colour_min:.2f} % (threshold {100 * MAX_COLOURED_FRACTION:g} %)")


def real_frames(path):
    """RGB frames of a real file and its crop box (2D tissue region, else the whole frame)."""
    if path.suffix.lower() == ".gif":
        capture, frames = cv2.VideoCapture(str(path)), []
        while (read := capture.read())[0]:
            frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
        return np.stack(frames), (0, 0, frames[0].shape[1], frames[0].shape[0]), "whole frame"
    import pydicom
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        pixels = pixels >> 8 if pixels.dtype.itemsize > 1 else pixels
    pixels = pixels.astype(np.uint8)
    frames = pixels if pixels.ndim == 4 else pixels[None]
    height, width = frames.shape[1:3]
    box, _ = tissue_crop(read_regions(ds), width, height)
    return frames, box or (0, 0, width, height), "2D tissue region" if box else "whole frame"


def bench_real():
    from pydicom.data import get_testdata_file

    paths = [Path(get_testdata_file(name)) for name in PYDICOM_US]
    paths += sorted(REAL.glob("*.dcm")) + sorted(REAL.glob("*.gif")) if REAL.is_dir() else []
    print("\n2. real files: coloured share in the crop, and predict.py's decision (--min_frames 2 --min_seconds 0)")
    clips = ArchiveClips(paths, 16, 4, rules=ShortLoopSettings(min_frames=2, min_seconds=0))
    with quiet_pydicom():
        for k, path in enumerate(paths):
            frames, box, where = real_frames(path)
            share = share_in(frames, box, CHROMA_MIN)
            item = clips[k]
            print(f"   {path.name:<24} {len(frames):3d} frame(s), {where:<16} {100 * share:6.2f} % -> "
                  f"{'COLOUR' if share > MAX_COLOURED_FRACTION else 'grey':<6} | {item['status']}: "
                  f"{item['error'] or 'crop ' + item['crop'] + ' (' + item['crop_source'] + ')'}")
    return paths


def median_seconds(work, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_cost(paths, models, frames_per_clip=36):
    print(f"\n3. cost on this CPU ({torch.get_num_threads()} torch threads)")
    dicoms = [p for p in paths if p.suffix == ".dcm"]
    with quiet_pydicom():
        header = np.median([median_seconds(lambda p=p: screen_dicom(str(p)), 20) for p in dicoms])
    print(f"   header (screen_dicom: read, identity, ImageType, regions): {1000 * header:.2f} ms a file "
          f"(median of {len(dicoms)} files)")
    rng = np.random.default_rng(0)
    per_frame = {}
    for height, width in ((112, 112), (422, 636), (600, 800)):
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        per_frame[(height, width)] = median_seconds(lambda f=frame: ColourMeter().add(f), 200)
        print(f"   pixels (colour meter): {1000 * per_frame[(height, width)]:.3f} ms a {width}x{height} frame, "
              f"{per_frame[(height, width)] * 150:.3f} s a 3 s loop at 50 fps")
    clip = torch.rand(1, 3, frames_per_clip, 112, 112)
    for name in models:
        model = get_feature_extractor(name).eval()
        with torch.inference_mode():
            model(clip)  # warm-up
            seconds = median_seconds(lambda: model(clip), 3)
        ratio = per_frame[(600, 800)] * 150 / seconds
        print(f"   model {name}: {seconds:.2f} s a clip of {frames_per_clip} frames; the pixel check of a 3 s "
              f"800x600 loop is {100 * ratio:.2f} % of one clip")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=["uniformer_tiny", "uniformer_small"])
    opt = parser.parse_args()
    torch.set_num_threads(opt.threads)
    bench_generated()
    paths = bench_real()
    bench_cost(paths, opt.models)


if __name__ == "__main__":
    main()
