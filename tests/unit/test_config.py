import json

import pytest

from resnet_core.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig


def test_run_config_round_trips_through_json():
    cfg = RunConfig(model=ModelConfig(depth=56, residual=False, shortcut="B", preact=True),
                    data=DataConfig(n_train=100, n_test=50), train=TrainConfig(steps=7, lr=0.05), name="x")
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize("factory,match", [
    (lambda: TrainConfig(lr=-0.1), "learning rate"),
    (lambda: TrainConfig(steps=None, epochs=None), "exactly one"),
    (lambda: TrainConfig(steps=0), "steps"),
    (lambda: TrainConfig(batch_size=0), "batch size"),
    (lambda: TrainConfig(device="tpu"), "device"),
    (lambda: TrainConfig(schedule="linear"), "schedule"),
    (lambda: ModelConfig(shortcut="D"), "shortcut"),
    (lambda: ModelConfig(width=0), "width"),
    (lambda: ModelConfig(batchnorm=False, zero_init_last=True), "BatchNorm"),
    (lambda: DataConfig(name="imagenet"), "dataset"),
    (lambda: DataConfig(name="folder"), "path"),
    (lambda: RunConfig.from_dict({"model": {"depht": 20}}), "unknown"),
])
def test_invalid_settings_say_what_is_valid(factory, match):
    with pytest.raises(ConfigError, match=match):
        factory()


def test_epochs_convert_to_steps():
    assert TrainConfig(steps=None, epochs=2, batch_size=100).total_steps(1000) == 20
    assert TrainConfig(steps=33).total_steps(1000) == 33
