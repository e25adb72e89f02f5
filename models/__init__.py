"""Models: the UniFormer video backbones (`uniformer`, timm style, checkpoint-exact names), CoReEcho's shallow MLP
regressor (`regressor`), and `build`: encoder + regressor from any weights (a CoReEcho checkpoint, Kinetics-400
weights, `none`), with the checkpoint kind detected in one place."""
from .build import (KIND_NAMES, Weights, build_model, fitting_model_name, get_feature_extractor, load_pretrained,
                    load_state_dict_file, load_weights, place_model, read_weights, require_kind)
from .regressor import MEAN_EF, get_shallow_mlp_head
from .uniformer import UniFormer, uniformer_base, uniformer_small, uniformer_tiny

__all__ = [
    'UniFormer', 'uniformer_small', 'uniformer_base', 'uniformer_tiny',
    'get_feature_extractor', 'get_shallow_mlp_head', 'build_model', 'place_model', 'read_weights', 'load_weights', 'require_kind',
    'Weights', 'KIND_NAMES',
    'load_pretrained', 'fitting_model_name', 'load_state_dict_file', 'MEAN_EF',
]
