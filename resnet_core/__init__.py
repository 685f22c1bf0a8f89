"""resnet_core: configurable plain/residual CIFAR nets, data, instrumented training, runs, attribution.

Pure PyTorch; never imports Streamlit (tests/unit/test_package.py checks it).
"""
from resnet_core.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.nets.models import BasicBlock, Bottleneck, CifarResNet, build_model, count_macs, count_params

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "RunConfig", "TrainConfig",
    "BasicBlock", "Bottleneck", "CifarResNet", "build_model", "count_macs", "count_params",
]
__version__ = "0.1.0"
