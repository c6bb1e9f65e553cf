"""vitlab: the Vision Transformer of "An Image is Worth 16x16 Words", faithful, interoperable, complete."""
from .models import Intermediates, ViTConfig, VisionTransformer, create_model, get_config, list_models, register
from .weights import load_model, load_weights
from .weights.pretrained import from_pretrained, save_pretrained

__version__ = "0.1.0"

__all__ = [
    "Intermediates",
    "ViTConfig",
    "VisionTransformer",
    "create_model",
    "from_pretrained",
    "get_config",
    "list_models",
    "load_model",
    "load_weights",
    "register",
    "save_pretrained",
]
