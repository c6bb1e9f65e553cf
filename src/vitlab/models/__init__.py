"""Model definitions: the ViT itself, position embeddings, ResNet hybrids, and the named-variant registry."""
from .registry import create_model, get_config, list_models, register
from .vit import Intermediates, ViTConfig, VisionTransformer

__all__ = ["create_model", "get_config", "list_models", "register", "Intermediates", "ViTConfig", "VisionTransformer"]
