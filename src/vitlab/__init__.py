"""vitlab: the Vision Transformer of "An Image is Worth 16x16 Words", faithful, interoperable, complete."""
from .api import create_model
from .models import Intermediates, ViTConfig, VisionTransformer, from_pretrained, get_config, list_models, register
from .models.pretrained import save_pretrained
from .weights import load_model, load_weights
from .weights.catalog import list_pretrained

__version__ = "0.1.0"

__all__ = [
    "Intermediates",
    "ViTConfig",
    "VisionTransformer",
    "create_model",
    "from_pretrained",
    "get_config",
    "list_models",
    "list_pretrained",
    "load_model",
    "load_weights",
    "register",
    "save_pretrained",
]
