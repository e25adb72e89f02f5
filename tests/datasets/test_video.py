"""datasets/video.py: EchoNet AVIs decoded as OpenCV decodes them (RGB order, picked frames, frame counts),
unreadable, empty and cut files named in the error, other frame sizes resized with a warning."""
import cv2
import numpy as np
import pytest

from conftest import frame_number, index_frames, reference_decode, write_avi
from datasets import VideoReader, decode_video, frame_count


def test_decode_matches_opencv_and_reader_picks_frames(indexed_echonet):
    path = indexed_echonet / "Videos" / "V000.avi"
    video = decode_video(path)
    reference = reference_decode(path)
    assert video.dtype == np.uint8 and video.shape == (60, 112, 112, 3)
    assert np.array_equal(video, reference)
    assert [frame_number(f) for f in video] == list(range(60))
    assert frame_count(path) == 60
    # colour order is RGB (OpenCV decodes to BGR)
    red = np.zeros((3, 112, 112, 3), np.uint8)
    red[..., 0] = 200
    write_avi(indexed_echonet / "red.avi", red)
    decoded = decode_video(indexed_echonet / "red.avi").reshape(-1, 3).mean(axis=0)
    (indexed_echonet / "red.avi").unlink()
    assert abs(decoded[0] - 200) < 4 and decoded[1] < 4 and decoded[2] < 4
    with VideoReader(path) as reader:
        picked = reader.read([7, 3, 3, 59])
    assert np.array_equal(picked, reference[[7, 3, 3, 59]])


def test_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.avi"):
        decode_video(tmp_path / "nothere.avi")
    (tmp_path / "garbage.avi").write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match="garbage.avi.*cannot be opened"):
        decode_video(tmp_path / "garbage.avi")
    writer = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 50, (112, 112))
    writer.release()
    with pytest.raises(ValueError, match="empty.avi"):
        decode_video(tmp_path / "empty.avi")
    # truncated: the header still promises 40 frames
    write_avi(tmp_path / "full.avi", index_frames(40))
    data_bytes = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data_bytes[: len(data_bytes) // 2])
    assert frame_count(tmp_path / "cut.avi") == 40
    with pytest.raises(ValueError, match=r"cut.avi: frame \d+ cannot be read"):
        decode_video(tmp_path / "cut.avi")


def test_other_frame_size_is_resized_with_warning(tmp_path):
    frames = np.full((5, 64, 80), 150, np.uint8)
    write_avi(tmp_path / "small.avi", frames)
    with pytest.warns(UserWarning, match=r"small.avi: frames are 80x64, resized to 112x112"):
        video = decode_video(tmp_path / "small.avi")
    assert video.shape == (5, 112, 112, 3)
    assert np.abs(video.astype(int) - 150).max() <= 2
