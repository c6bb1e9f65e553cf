"""Model definitions: the ViT itself, position embeddings, ResNet hybrids, and the named-variant registry."""
from .registry import build_model, create_model, get_config, list_models, register
from .resnet import HybridEmbed, ResNet, ResNetConfig
from .vit import Intermediates, ViTConfig, VisionTransformer

__all__ = ["build_model", "create_model", "get_config", "list_models", "register", "HybridEmbed", "Intermediates",
           "ResNet", "ResNetConfig", "ViTConfig", "VisionTransformer"]
