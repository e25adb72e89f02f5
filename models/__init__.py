from .feature_extractor import (fitting_model_name, get_feature_extractor, load_coreecho_checkpoint, load_pretrained,
                                load_state_dict_file)
from .regressor import MEAN_EF, get_shallow_mlp_head
from .uniformer import UniFormer, uniformer_base, uniformer_small, uniformer_tiny

__all__ = [
    'UniFormer', 'uniformer_small', 'uniformer_base', 'uniformer_tiny',
    'get_feature_extractor', 'get_shallow_mlp_head', 'load_pretrained', 'load_coreecho_checkpoint',
    'fitting_model_name', 'load_state_dict_file', 'MEAN_EF',
]
