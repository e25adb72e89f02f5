"""datasets/sources/any_video.py: any echo video (AVI/MP4/DICOM) -> 112x112 model frames.

EchoNet sample videos must come out bit-identical to the project's decoder: the real ones
(../shared/data/echonet_samples; that case skips without it) and generated ones in their layout (conftest's
generated_samples, run everywhere). Everything else is written by the tests (conftest.py): DICOMs with pydicom and a
640x480 30 fps MP4 with a moving sector, burnt-in text, a static logo, a thin ECG trace and a black border,
whose sector the automatic crop must find. This OpenCV build (the opencv-python-headless wheel ships FFmpeg)
writes 'mp4v' MP4s; where a build cannot, the test falls back to an MJPG AVI, which exercises the same code
path. The DICOM reading itself: test_dicom.py.
"""
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from conftest import assert_one_line_naming, intersection, write_dicom, write_screen_recording
from datasets.sources.any_video import expand_inputs, find_moving_sector, load_echo_video, parse_crop, resample_frames
from datasets.video import decode_video
from utils.script.errors import BadInputError, MissingInputError

# ---------------------------------------------------------------- EchoNet videos


def test_echonet_avis_are_bit_identical_to_the_dataset_decoder(samples):
    videos = sorted((samples / "Videos").glob("*.avi"))
    assert len(videos) >= 6
    for video in videos:
        expected = decode_video(video)
        frames, info = load_echo_video(video)
        assert frames.dtype == np.uint8 and frames.shape == expected.shape, video.name
        assert np.array_equal(frames, expected), video.name
        assert info.crop is None and info.crop_text == ""
        assert (info.source_fps, info.fps, info.n_frames_original, info.n_frames) == (50.0, 50.0, len(expected),
                                                                                      len(expected))


# ---------------------------------------------------------------- screen recording: auto crop


def test_auto_crop_finds_the_moving_sector_of_a_screen_recording(tmp_path):
    path, boxes = write_screen_recording(tmp_path)
    frames, info = load_echo_video(path)
    assert frames.shape == (50, 112, 112, 3) and frames.dtype == np.uint8  # 30 frames at 30 -> 50 fps
    assert (info.source_fps, info.fps, info.n_frames_original) == (30.0, 50.0, 30)
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2])
    box, sector = info.crop, boxes["sector"]
    for overlay in ("text", "logo", "ecg"):
        assert intersection(box, boxes[overlay]) == 0, (overlay, box, boxes[overlay])
    assert intersection(box, sector) >= 0.97 * sector[2] * sector[3]  # nearly all of the sector ...
    assert box[2] * box[3] <= 1.15 * sector[2] * sector[3]  # ... and not much more
    assert info.crop_text == ",".join(map(str, box))

    # resampling 30 -> 50 fps: output frame k is source frame floor(k * 30 / 50)
    at_source_rate, info_0 = load_echo_video(path, target_fps=0)
    assert len(at_source_rate) == 30 and info_0.fps == 30.0 and info_0.crop == box
    assert np.array_equal(frames, at_source_rate[np.floor(np.arange(50) * 0.6 + 1e-6).astype(int)])


def test_crop_none_and_explicit_box(tmp_path):
    path, boxes = write_screen_recording(tmp_path, n_frames=4)
    _, info = load_echo_video(path, crop="none", target_fps=0)
    assert info.crop == (0, 0, 640, 480)
    frames, info = load_echo_video(path, crop="117,90,407,330", target_fps=0)
    assert info.crop == (117, 90, 407, 330) and frames.shape == (4, 112, 112, 3)
    with pytest.raises(BadInputError, match=f"{path}: crop box .* exceeds the frame \\(640x480\\)"):
        load_echo_video(path, crop=(600, 0, 100, 100))


def test_find_moving_sector_ignores_static_and_thin_moving_things():
    rng = np.random.default_rng(3)
    frames = []
    for t in range(6):
        frame = np.full((200, 300), 40, np.uint8)  # static grey everywhere
        frame[50:150, 100:220] = rng.integers(0, 255, (100, 120))  # the moving region
        frame[180, :(t + 1) * 40] = 255  # a 1-px line that grows (ECG sweep)
        frames.append(frame)
    x, y, w, h = find_moving_sector(frames)
    # the region (100, 50, 120, 100), give or take the 3-px blur of the motion map
    assert np.abs(np.array([x, y, x + w, y + h]) - [100, 50, 220, 150]).max() <= 1
    assert find_moving_sector([np.zeros((50, 50), np.uint8)] * 5) is None  # nothing moves


def test_parse_crop():
    assert parse_crop("auto") == "auto" and parse_crop(" None ") == "none"
    assert parse_crop("1, 2,30,40") == (1, 2, 30, 40) and parse_crop((0, 0, 5, 6)) == (0, 0, 5, 6)
    for bad in ("1,2,3", "1,2,0,4", "-1,0,4,4", "a,b,c,d", (1.5, 2, 3, 4), "square"):
        with pytest.raises(BadInputError, match="crop must be 'auto', 'none' or x,y,w,h"):
            parse_crop(bad)


# ---------------------------------------------------------------- time


def test_resample_frames():
    frames = np.arange(6)
    out, fps, note = resample_frames(frames, 30, 50)
    assert out.tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5] and fps == 50.0 and "30 -> 50" in note
    out, fps, _ = resample_frames(np.arange(10), 100, 50)
    assert out.tolist() == [0, 2, 4, 6, 8] and fps == 50.0
    for source, target, fps_out, words in ((None, 50, None, "frame rate unknown"),
                                           (30, 0, 30, "disabled"), (50.1, 50, 50.1, None)):
        out, fps, note = resample_frames(frames, source, target)
        assert out is frames and fps == fps_out
        assert (note is None) if words is None else (words in note)


# ---------------------------------------------------------------- errors, one line naming the file


@pytest.mark.parametrize("case, words", [
    ("corrupt.avi", "cannot be opened as a video"),
    ("corrupt.dcm", "not a readable DICOM"),
    ("zero_frames.avi", "has no frames"),
    ("zero_frames.dcm", "DICOM file has no frames"),
    ("single_frame.dcm", "single-frame DICOM"),
    ("no_frame_count.dcm", "single-frame DICOM"),
    ("sixteen_bits.dcm", "only 8-bit"),
    ("truncated.dcm", "cannot decode DICOM pixel data"),
    ("three_frames_at_200fps.avi", "3 frames at 200 fps leave 1 at 50 fps; at least 2"),
])
def test_bad_videos_give_one_line_errors(tmp_path, case, words):
    path = tmp_path / case
    frames = np.zeros((3, 16, 16), np.uint8)
    if case.startswith("corrupt"):
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif case == "zero_frames.avi":
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
        writer.release()  # a valid AVI header without frames
    elif case == "zero_frames.dcm":
        write_dicom(path, frames, pixel_bytes=b"", NumberOfFrames=0)
    elif case == "single_frame.dcm":
        write_dicom(path, frames[:1])
    elif case == "no_frame_count.dcm":
        write_dicom(path, frames[:1])
        dataset = pydicom.dcmread(path)
        del dataset.NumberOfFrames
        dataset.save_as(path)
    elif case == "sixteen_bits.dcm":
        write_dicom(path, frames.astype(np.uint16), bits=16)
    elif case == "truncated.dcm":
        write_dicom(path, frames, pixel_bytes=frames.tobytes()[:300])
    elif case == "three_frames_at_200fps.avi":  # resampled to 50 fps: one frame
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 200, (112, 112))
        for level in (40, 120, 200):
            writer.write(np.full((112, 112, 3), level, np.uint8))
        writer.release()
    with pytest.raises(BadInputError, match=words) as error:
        load_echo_video(path)
    assert_one_line_naming(error, path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(MissingInputError) as error:
        load_echo_video(tmp_path / "absent.mp4")
    assert_one_line_naming(error, tmp_path / "absent.mp4")
    with pytest.raises(BadInputError, match="is not a file"):
        load_echo_video(tmp_path)
    path = write_dicom(tmp_path / "ok.dcm", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(BadInputError, match="target_fps must be a positive number"):
        load_echo_video(path, target_fps=-5)
    with pytest.raises(BadInputError, match="crop must be"):
        load_echo_video(path, crop="sector")


# ---------------------------------------------------------------- finding the inputs


def test_expand_inputs(tmp_path, monkeypatch):
    frames = np.zeros((2, 8, 8), np.uint8)
    root = tmp_path / "study"
    (root / "a" / "b").mkdir(parents=True)
    for name in ("x.avi", "a/y.MP4", "a/b/z.mkv", "a/notes.txt", "list.csv", "a/b/.hidden.avi", "a/readme"):
        (root / name).write_bytes(b"not inspected")
    write_dicom(root / "a" / "b" / "IM0001", frames)  # DICOM without extension
    write_dicom(root / "DICOMDIR", frames)  # a DICOM index, not a video
    videos = [root / "a" / "b" / "IM0001", root / "a" / "b" / "z.mkv", root / "a" / "y.MP4", root / "x.avi"]

    assert expand_inputs([root]) == videos
    assert expand_inputs([root / "a", root / "x.avi", str(root / "x.avi")]) == videos  # no duplicates
    assert expand_inputs([root / "list.csv"]) == [root / "list.csv"]  # named explicitly: always tried
    assert expand_inputs([str(root / "**" / "*.avi")]) == [root / "x.avi"]  # hidden file skipped
    assert expand_inputs([str(root / "*")]) == videos  # the folder 'a' matched: searched; list.csv skipped
    monkeypatch.chdir(root)
    assert expand_inputs(["a/b/*"]) == [Path("a/b/IM0001"), Path("a/b/z.mkv")]

    with pytest.raises(MissingInputError, match="input .*nothing.avi does not exist"):
        expand_inputs([root / "nothing.avi"])
    with pytest.raises(MissingInputError, match="no file matches .*\\*.mov"):
        expand_inputs([str(root / "*.mov")])
    (root / "empty").mkdir()
    with pytest.raises(BadInputError, match="folder .*empty holds no video files"):
        expand_inputs([root / "empty"])


def test_gifs_in_a_folder_are_listed_and_read(tmp_path):
    """A GIF in a folder is listed with the videos (a .png beside it is not) and read like any video."""
    from PIL import Image

    frames = [Image.fromarray(np.full((60, 80), 40 * k, np.uint8)) for k in range(4)]
    frames[0].save(tmp_path / "loop.gif", save_all=True, append_images=frames[1:], duration=40)
    frames[0].save(tmp_path / "still.png")
    assert expand_inputs([tmp_path]) == [tmp_path / "loop.gif"]
    video, info = load_echo_video(tmp_path / "loop.gif", crop="none", target_fps=0)
    assert video.shape == (4, 112, 112, 3) and info.frame_size == (80, 60)
    assert [int(f[56, 56, 0]) for f in video] == [0, 40, 80, 120]
