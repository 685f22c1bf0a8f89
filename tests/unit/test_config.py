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


# ---------------------------------------------------------------------------------------------------
# quick-scale options: fractional widths, input size, run groups
# ---------------------------------------------------------------------------------------------------

def test_fractional_width_round_trips_and_shows_in_the_label():
    cfg = RunConfig(model=ModelConfig(width=0.5, residual=False, depth=56), data=DataConfig(image_size=16),
                    group="fig6/quick/20261124-120000")
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.model.width == 0.5 and again.group == cfg.group
    assert cfg.model.stage_widths == (8, 16, 32)
    assert cfg.label == "plain-56 w0.5 16px"
    assert RunConfig().label == "resnet-20"                      # defaults add nothing
    assert ModelConfig(width=1.0).width == 1 and isinstance(ModelConfig(width=1.0).width, int)
    assert ModelConfig(width=2).name == "resnet-20 w2"


def test_old_config_json_without_group_or_image_size_loads():
    old = {"model": {"depth": 20, "width": 1}, "data": {"name": "synthetic"}, "train": {"steps": 5}, "name": ""}
    cfg = RunConfig.from_dict(old)
    assert cfg.group == "" and cfg.data.image_size == 32 and cfg.data.clutter is True


@pytest.mark.parametrize("factory,match", [
    (lambda: ModelConfig(width=0.03), "one channel"),
    (lambda: ModelConfig(width=17), "width"),
    (lambda: ModelConfig(width="half"), "number"),
    (lambda: DataConfig(image_size=4), "image size"),
    (lambda: DataConfig(image_size=65), "image size"),
    (lambda: DataConfig(image_size=16.5), "image size"),
])
def test_quick_options_are_validated(factory, match):
    with pytest.raises(ConfigError, match=match):
        factory()
