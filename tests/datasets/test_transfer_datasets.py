"""Clips of transfer_learning.py's videos (datasets/transfer.py): HMC-QU's annotated cycle, the released CAMUS
normalisation and the random affine augmentation of fine-tuning clips, drawn per (seed, epoch, index)."""
from dataclasses import replace

import cv2

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode, RandomAffine

from datasets.clips import MEAN, STD, clip_grid, cut_clips
from datasets.sources import camus, hmcqu
from datasets.sources.any_video import load_echo_video, resample_frames
from datasets.synthetic.transfer import generated_labels, make_synthetic_camus, make_synthetic_hmcqu
from datasets.transfer import (CAMUS_MEAN, CAMUS_STD, ClipSpec, TrainClips, VideoClips, affine_frames,
                               affine_parameters, camus_videos, decoded_frames, hmcqu_videos)
from utils.script.errors import BadInputError

SPEC = ClipSpec(frames=4, frequency=2, clip_stride=4)


@pytest.fixture(scope="module")
def hmcqu_cycles(tmp_path_factory):
    """A4C recordings of 12 frames whose annotated cycle ends before the last frame."""
    root = make_synthetic_hmcqu(tmp_path_factory.mktemp("cycles"), n=3, seed=4, n_frames=12, views=("A4C",),
                                sheet_format="csv")
    return root, hmcqu_videos(hmcqu.list_recordings(root, "A4C", cycle=True))


def test_cycle_clips_use_the_annotated_frames(hmcqu_cycles, tmp_path):
    root, videos = hmcqu_cycles
    sheet = generated_labels(root / "A4C.csv")
    assert [v.cycle for v in videos] == list(zip(sheet["first"], sheet["last"]))
    for video in videos:
        first, last = video.cycle
        native, info = load_echo_video(video.path, "auto", 0)
        expected = resample_frames(native[first - 1:last], info.source_fps, 50.0)[0]  # 25 -> 50 fps
        frames = decoded_frames(video, SPEC, tmp_path)
        assert np.array_equal(frames, expected) and len(frames) == 2 * (last - first + 1) < 2 * len(native)
        whole = decoded_frames(replace(video, cycle=None), SPEC, tmp_path)  # --hmcqu_frames all
        assert len(whole) == 2 * len(native) == 24
        item = VideoClips([video], SPEC, tmp_path)[0]
        assert item["starts"].tolist() == clip_grid(len(frames), 4, 2, 4).tolist()
        assert torch.equal(item["image"], cut_clips(expected, item["starts"].numpy(), 4, 2))
    with pytest.raises(BadInputError, match=r"has 12 frames but its annotated cycle ends at frame 13"):
        decoded_frames(replace(videos[0], cycle=(2, 13)), SPEC, tmp_path)


def test_affine_frames_rotate_scale_and_shift():
    frames = np.zeros((2, 5, 5, 3), np.uint8)
    frames[:, 0, 4] = 200  # top right
    assert np.array_equal(affine_frames(frames, 90.0, (0, 0), 1.0)[1, ..., 0], np.rot90(frames[1, ..., 0]))
    shifted = affine_frames(frames, 0.0, (-2, 3), 1.0)
    assert shifted[0, 3, 2].tolist() == [200] * 3 and shifted.sum() == 2 * 3 * 200
    assert affine_frames(frames, 0.0, (0, 0), 0.5)[0, 1, 3, 0] > 0  # half size about the centre (2, 2)


def torchvision_affine(frames, angle, shift, scale):
    """uint8 [T, H, W] under torchvision's bilinear affine, black outside. torchvision turns positive angles
    clockwise, the project (like cv2) counter-clockwise, hence -angle."""
    return TF.affine(torch.from_numpy(np.ascontiguousarray(frames)), angle=-angle, translate=list(shift),
                     scale=scale, shear=[0.0], interpolation=InterpolationMode.BILINEAR, fill=0).numpy()


def inside_and_outside(angle, shift, scale, size=112):
    """Masks of the output pixels whose four bilinear neighbours all lie inside the source frame, and of those far
    outside it (a one-pixel ring around the frame's edge left out), from torchvision's warp of a white frame."""
    white = torchvision_affine(np.full((1, size, size), 255, np.uint8), angle, shift, scale)[0]
    near = cv2.dilate((white > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
    return white == 255, near == 0


def assert_like_torchvision(warped, frames, angle, shift, scale):
    """Bilinear by cv2 (5-bit fixed-point weights) against torchvision (float weights): measured over 20 draws
    of affine_parameters on noise frames, inside the frame they differ by at most 1 grey level (rounding); at
    the frame's edge cv2 blends with black where torchvision keeps or blackens the pixel (up to 60 levels on a
    one-pixel ring), so the ring is left out and the far outside must be black."""
    expected = torchvision_affine(frames, angle, shift, scale)
    inside, outside = inside_and_outside(angle, shift, scale, frames.shape[-1])
    assert inside.mean() > 0.5 and outside.any()  # both regions are there to check
    difference = np.abs(warped.astype(int) - expected.astype(int))
    assert difference[:, inside].max() <= 1 and (warped[:, inside] != expected[:, inside]).mean() < 0.01
    assert not warped[:, outside].any()


@pytest.mark.parametrize("seed", [1, 2, 3, 5])
def test_affine_frames_match_torchvision_bilinear(seed):
    frames = np.random.default_rng(seed).integers(0, 256, (2, 112, 112), dtype=np.uint8)
    angle, shift, scale = affine_parameters(torch.Generator().manual_seed(seed), 112)
    assert abs(angle) > 1 and shift != (0, 0) and abs(scale - 1) > 0.015  # a real rotation, shift and scaling
    warped = affine_frames(frames[..., None], angle, shift, scale)[..., 0]
    assert_like_torchvision(warped, frames, angle, shift, scale)


def test_affine_parameters_are_torchvision_random_affine_draws():
    # RandomAffine(10, translate=(0.1, 0.1), scale=(0.8, 1.1)) draws from the global stream: the same seed there
    for seed in range(5):
        ours = affine_parameters(torch.Generator().manual_seed(seed), 112)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            theirs = RandomAffine.get_params((-10.0, 10.0), (0.1, 0.1), (0.8, 1.1), None, [112, 112])
        assert ours == theirs[:3] and theirs[3] == (0.0, 0.0)


def test_affine_parameters_are_the_released_ranges():
    generator = torch.Generator().manual_seed(0)
    angles, shifts, scales = zip(*(affine_parameters(generator, 112) for _ in range(300)))
    assert -10 <= min(angles) < -9 and 9 < max(angles) <= 10
    assert {s for shift in shifts for s in shift} == set(range(-11, 12))  # +-10 % of 112 px, whole pixels
    assert 0.8 <= min(scales) < 0.82 and 1.08 < max(scales) <= 1.1


def test_camus_video_clips_are_the_grey_ed_to_es_clip_in_three_normalised_channels(tmp_path):
    videos = camus_videos(make_synthetic_camus(tmp_path / "camus", n=2, seed=5), "both")
    assert [(v.name, v.patient) for v in videos] == [(f"patient{i:04d}_{view}", f"patient{i:04d}")
                                                     for i in (1, 2) for view in ("4CH", "2CH")]
    for normalisation, mean, std in (("echonet", MEAN, STD), ("camus", [CAMUS_MEAN] * 3, [CAMUS_STD] * 3)):
        clips = VideoClips(videos, replace(SPEC, frames=8, normalisation=normalisation), tmp_path / "frames")
        item = clips[1]
        assert item["name"] == "patient0001_2CH" and item["starts"].tolist() == [0]  # one clip: ED -> ES
        assert item["image"].shape == (1, 3, 8, 112, 112) and item["image"].dtype == torch.float32
        assert item["label"].tolist() == [pytest.approx(videos[1].camus.ef)]
        grey = camus.load_frames(videos[1].camus, 8).astype(np.float64)
        for c in range(3):  # the grey clip in every channel, (pixel - mean) / std per channel
            np.testing.assert_allclose(item["image"][0, c].numpy(), (grey - mean[c]) / std[c], rtol=1e-5, atol=1e-5)


def test_train_clips_affine_camus_normalisation_per_seed_epoch_index(tmp_path):
    videos = camus_videos(make_synthetic_camus(tmp_path / "camus", n=2, seed=6), ("4CH",))
    clip_spec = ClipSpec(frames=8, frequency=4, clip_stride=16, seed=3, aug="affine", normalisation="camus")
    clips = TrainClips(videos, clip_spec, tmp_path / "frames")
    item = clips[1]
    assert torch.equal(clips[1]["image"], item["image"])  # the same draw every time
    pixels = item["image"].numpy() * CAMUS_STD + CAMUS_MEAN  # back to 0..255 with the released statistics
    assert np.abs(pixels - np.rint(pixels)).max() < 1e-3 and pixels.min() > -1e-3 and pixels.max() < 255.001
    generator = clips.item_generator(1)
    torch.randint(1, (1,), generator=generator)  # the start (one valid start: the CAMUS clip is 8 frames)
    with torch.random.fork_rng():  # the rest of the item's stream, drawn by torchvision's RandomAffine
        torch.random.set_rng_state(generator.get_state())
        angle, shift, scale, _ = RandomAffine.get_params((-10.0, 10.0), (0.1, 0.1), (0.8, 1.1), None, [112, 112])
    grey = camus.load_frames(videos[1].camus, 8)
    assert np.allclose(pixels[0], pixels[1:], atol=1e-3)  # the grey clip in 3 channels (float rounding)
    warped = np.rint(pixels[0]).astype(np.uint8)
    assert not np.array_equal(warped, grey)
    assert_like_torchvision(warped, grey, angle, shift, scale)
    clips.set_epoch(1)
    assert not torch.equal(clips[1]["image"], item["image"])  # another epoch, another draw
    plain = VideoClips(videos, replace(clip_spec, normalisation="echonet"), tmp_path / "frames")[1]["image"][0]
    assert torch.equal(plain, cut_clips(np.repeat(grey[..., None], 3, axis=-1), [0], 8, 1)[0])  # EchoNet mean / std
