"""utils/evaluation/inference.py in one process: `predict` scores every video once in dataset order; per-clip
results are arrays when every video has the same number of clips, lists of arrays otherwise, and the means over
clips are the same either way. Under torchrun: test_inference_distributed.py."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from utils.engine.distributed import init_distributed
from utils.evaluation.inference import InferenceSettings, predict


class MeanModel(nn.Module):
    """An encoder whose embedding of a clip is (its mean, its max): easy to check by hand."""

    def forward(self, clips):
        flat = clips.flatten(1)
        return None, torch.stack([flat.mean(1), flat.amax(1)], dim=1)


def videos(counts):
    """Items of videos with `counts` clips each; clip k of video i is filled with i + k / 10."""
    return [{"name": f"v{i}", "label": torch.tensor([10.0 * i]),
             "image": torch.stack([torch.full((3, 2, 4, 4), i + k / 10) for k in range(n)]),
             "starts": torch.arange(n) * 3} for i, n in enumerate(counts)]


@pytest.mark.parametrize("counts", [(2, 2, 2), (1, 3, 2)])
def test_predict_fixed_and_variable_clips(counts):
    items = videos(counts)
    regressor = nn.Linear(2, 1)
    with torch.no_grad():
        regressor.weight.copy_(torch.tensor([[1.0, 0.0]]))
        regressor.bias.zero_()
    result = predict(MeanModel(), regressor, items, init_distributed("cpu"), InferenceSettings(max_videos=2))

    assert result["names"] == ["v0", "v1", "v2"] and result["labels"].tolist() == [0.0, 10.0, 20.0]
    assert result["n_clips"].tolist() == list(counts)
    expected = [np.float32(i) + np.arange(n, dtype=np.float32) / np.float32(10) for i, n in enumerate(counts)]
    for i, n in enumerate(counts):
        np.testing.assert_allclose(result["clip_predictions"][i], expected[i], rtol=1e-6)
        np.testing.assert_array_equal(result["starts"][i], np.arange(n) * 3)
        assert result["predictions"][i] == pytest.approx(expected[i].mean(), rel=1e-6)
        np.testing.assert_allclose(result["embeddings"][i], [expected[i].mean()] * 2, rtol=1e-6)
    fixed = len(set(counts)) == 1
    for key in ("clip_predictions", "clip_embeddings", "starts"):
        assert isinstance(result[key], np.ndarray if fixed else list), key
    if fixed:
        assert result["clip_embeddings"].shape == (3, 2, 2) and result["clip_predictions"].dtype == np.float64
