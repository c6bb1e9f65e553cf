"""Weights in and out: detect a file's format, convert it to vitlab's keys, load it safely, export it.

Import direction: ``weights`` imports ``models``, never the reverse; the model knows no foreign format.
"""
from .export import convert, export, save_hf, save_npz, save_state_dict, save_timm
from .formats import FORMATS, read_checkpoint
from .load import describe_checkpoint, load_model, load_weights

__all__ = [
    "FORMATS",
    "convert",
    "describe_checkpoint",
    "export",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "save_hf",
    "save_npz",
    "save_state_dict",
    "save_timm",
]
