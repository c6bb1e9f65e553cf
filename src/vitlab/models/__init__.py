"""Model definitions: the ViT itself, position embeddings, ResNet hybrids, and the named-variant registry."""
from .hybrid import HybridEmbed
from .registry import from_pretrained, get_config, list_models, model_from_config, read_config, register
from .resnet import ResNet, ResNetConfig
from .vit import Intermediates, ViTConfig, VisionTransformer

__all__ = ["from_pretrained", "get_config", "list_models", "model_from_config", "read_config", "register",
           "HybridEmbed", "Intermediates", "ResNet", "ResNetConfig", "ViTConfig", "VisionTransformer"]
