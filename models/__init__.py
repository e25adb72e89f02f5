from .feature_extractor import get_feature_extractor, load_pretrained, load_state_dict_file
from .regressor import MEAN_EF, get_shallow_mlp_head
from .uniformer import UniFormer, uniformer_base, uniformer_small, uniformer_tiny

__all__ = [
    'UniFormer', 'uniformer_small', 'uniformer_base', 'uniformer_tiny',
    'get_feature_extractor', 'get_shallow_mlp_head', 'load_pretrained', 'load_state_dict_file', 'MEAN_EF',
]
