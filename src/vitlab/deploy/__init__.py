"""Deployment: ONNX export with the model's metadata, and inference backends (torch, ONNX Runtime, OpenVINO)."""
from .backends import BACKENDS, Backend, BackendModel, OnnxRuntimeBackend, OpenVinoBackend, TorchBackend, open_backend
from .onnx import ExportReport, export_onnx, read_config

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendModel",
    "ExportReport",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "TorchBackend",
    "export_onnx",
    "open_backend",
    "read_config",
]
