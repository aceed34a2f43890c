from .checkpoint import load_model, read_config, resolve_checkpoint, save_model
from .factory import ModelConfig, SingerModel, create_model, get_config, list_models
from .heads import ClassifierHead, Projector

__all__ = [
    "ModelConfig", "SingerModel", "create_model", "get_config", "list_models", "load_model", "save_model",
    "read_config", "resolve_checkpoint", "ClassifierHead", "Projector",
]
