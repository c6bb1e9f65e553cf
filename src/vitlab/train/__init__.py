"""Training: typed recipes (config), optimizers and schedules (optim), atomic checkpoints, the loop
(single process or torchrun/DDP), and the run directory's outputs (report)."""
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import Config, DataSection, ModelSection, OptimSection, ScheduleSection, TrainSection, load_config
from .loop import NonFiniteLossError, TrainResult, train
from .setup import build_model
from .optim import ModelEMA, build_optimizer, lr_factor, param_groups

__all__ = [
    "Config",
    "DataSection",
    "ModelEMA",
    "ModelSection",
    "NonFiniteLossError",
    "OptimSection",
    "ScheduleSection",
    "TrainResult",
    "TrainSection",
    "build_model",
    "build_optimizer",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "lr_factor",
    "param_groups",
    "save_checkpoint",
    "train",
]
