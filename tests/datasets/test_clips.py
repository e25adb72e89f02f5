"""datasets/clips.py: the EchoNet normalisation and its inverse, the padded random crop, and the one clip cutter
of open, cached and decoded videos."""
import numpy as np
import pandas as pd
import torch

from conftest import expected_clip, write_avi
from datasets import MEAN, STD, EchoNet, VideoReader, decode_video, open_cached
from datasets.clips import cut_clips, denormalise, normalise, shifted_crop


def test_normalisation_of_a_known_frame(tmp_path):
    root = tmp_path
    (root / "Videos").mkdir()
    write_avi(root / "Videos" / "F.avi", np.full((10, 112, 112), 90, np.uint8))
    pd.DataFrame({"FileName": ["F"], "EF": [60], "Split": ["TRAIN"]}).to_csv(root / "FileList.csv", index=False)
    pd.DataFrame([("F.avi", 0, 0, 1, 1, 0), ("F.avi", 0, 0, 1, 1, 5)],
                 columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(root / "VolumeTracings.csv", index=False)
    assert np.allclose(MEAN, [0.12741163 * 255, 0.1279413 * 255, 0.12912785 * 255])
    assert np.allclose(STD, [0.19557191 * 255, 0.19562256 * 255, 0.1965878 * 255])
    decoded = decode_video(root / "Videos" / "F.avi")
    image = EchoNet(root, frames=4, frequency=2)[0]["image"]
    for c in range(3):
        expected = (decoded[0, :, :, c].astype(np.float64) - MEAN[c]) / STD[c]
        assert np.abs(image[c, 0].numpy() - expected).max() < 1e-6
    # grey level 90 lands near (90 - 32.49) / 49.87 = 1.153
    assert abs(image[0, 0, 50, 50].item() - (90 - MEAN[0]) / STD[0]) < 0.05


def test_shifted_crop_is_torchvisions_padded_random_crop():
    from torchvision.transforms.v2 import functional as TF
    clip = np.random.default_rng(0).integers(1, 256, (3, 2, 112, 112), dtype=np.uint8)
    for top in range(13):
        for left in range(13):
            expected = TF.crop(torch.from_numpy(clip), top - 6, left - 6, 112, 112).numpy()  # pads with zeros
            assert np.array_equal(shifted_crop(clip, top, left), expected), (top, left)
    assert (shifted_crop(clip, 12, 0)[..., -6:, :] == 0).all() and (shifted_crop(clip, 12, 0)[..., :-6, 6:] > 0).all()


def test_one_cutter_for_open_videos_and_decoded_frames(indexed_echonet, tmp_path):
    # 20 frames, padded to 8 x 3 = 24: the clips at 1 and 2 end in padding
    path = indexed_echonet / "Videos" / "V003.avi"
    decoded = decode_video(path)
    starts, offsets = [0, 2, 1], [(0, 12), (6, 6), (12, 3)]
    plain = cut_clips(decoded, starts, 8, 3)
    assert plain.shape == (3, 3, 8, 112, 112) and plain.dtype == torch.float32
    for clip, start in zip(plain, starts):
        assert torch.allclose(clip, expected_clip(decoded, start, 8, 3), atol=1e-6)
    with VideoReader(path) as reader:
        assert torch.equal(cut_clips(reader, starts, 8, 3), plain)
    with open_cached(path, tmp_path) as cached:  # one grey channel and its colour table
        assert cached.colour_lut is not None and torch.equal(cut_clips(cached, starts, 8, 3), plain)
        cropped = cut_clips(cached, starts, 8, 3, offsets)
    padded = np.concatenate([decoded, np.zeros((4, 112, 112, 3), np.uint8)])
    for clip, start, offset in zip(cropped, starts, offsets):
        frames = shifted_crop(padded[start + 3 * np.arange(8)].transpose(3, 0, 1, 2), *offset)
        assert torch.equal(clip, torch.from_numpy(normalise(frames)))


def test_denormalise_inverts_the_datasets_normalisation():
    frames = np.random.default_rng(2).integers(0, 256, size=(3, 5, 112, 112), dtype=np.uint8)  # [C, T, H, W]
    clip = torch.from_numpy(normalise(frames))
    np.testing.assert_array_equal(denormalise(clip), frames.transpose(1, 2, 3, 0))
