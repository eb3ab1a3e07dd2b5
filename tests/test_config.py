"""Bad settings are refused when the config is made, with a message naming the setting."""

from __future__ import annotations

import dataclasses

import pytest

from charlstm.config import CorpusConfig, ModelConfig, SampleConfig, TrainConfig
from charlstm.config.dynamic import DynamicConfig
from charlstm.errors import ConfigError


@pytest.mark.parametrize(("changes", "named"), [
    ({"eval_every": -5}, "eval_every"), ({"weight_decay": -1}, "weight_decay"),
    ({"adam_eps": -1}, "adam_eps"), ({"adam_eps": 0}, "adam_eps"), ({"seed": 2**64}, "seed"),
    ({"seed": -1}, "seed"), ({"beta2": 1.0}, "beta2"), ({"grad_clip": -0.5}, "grad_clip"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"min_lr_ratio": 2}, "min_lr_ratio"),
])
def test_bad_training_settings_are_refused(changes, named):
    with pytest.raises(ConfigError, match=named):
        TrainConfig(**changes)


def test_the_defaults_and_the_edges_are_accepted():
    TrainConfig()
    TrainConfig(eval_every=0, weight_decay=0, grad_clip=0, warmup_steps=0, seed=2**32 - 1, beta2=0.0)


def test_eval_max_chars_defaults_to_a_cap_and_reads_old_runs_none_as_all():
    assert TrainConfig().eval_max_chars == 100_000
    assert TrainConfig(eval_max_chars=None).eval_max_chars == 0  # configs written before the cap
    with pytest.raises(ConfigError, match="eval_max_chars"):
        TrainConfig(eval_max_chars=-1)


CONFIGS = (ModelConfig, TrainConfig, CorpusConfig, SampleConfig, DynamicConfig)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_setting_has_its_help_on_its_field(config):
    for f in dataclasses.fields(config):
        text = f.metadata.get("help")
        assert isinstance(text, str) and text.strip(), f"{config.__name__}.{f.name} has no help"
        assert text == " ".join(text.split()), f"{config.__name__}.{f.name}: one line, single spaces"
        assert text.endswith((".", ")")) and not text.endswith(".."), f"{config.__name__}.{f.name}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_a_fields_default_is_still_its_class_attribute(config):
    instance = config()
    for f in dataclasses.fields(config):  # the CLI reads DynamicConfig.lr and the like
        assert getattr(config, f.name) == f.default == getattr(instance, f.name)
