"""Presets, config files and overrides: validated once, JSON round-trip."""

import json

import pytest

from gantool.config import (
    PRESETS,
    RunConfig,
    apply_overrides,
    load_config_file,
    parse_set_options,
    preset_config,
    run_config,
)
from gantool.errors import ConfigError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = preset_config(name)
    assert run_config(json.loads(cfg.to_json())) == cfg


def test_fashion_mnist_preset_values():
    c = preset_config("fashion-mnist")
    assert (c.model.resolution, c.model.channels, c.train.labels) == (28, 1, "one-sided")
    assert (c.model.d_dropout, c.train.lr_g, c.train.lr_d) == (0.0, 5e-4, 2e-4)
    assert preset_config("faces-64").model.resolution == 64


def test_precedence_preset_then_file_then_flags(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  lr_g: 0.001\n  batch_size: 32\nmodel.ngf: 16\n")
    (tmp_path / "c.json").write_text(json.dumps({"train": {"lr_d": 0.003}}))
    cfg = preset_config("fashion-mnist")
    over = load_config_file(tmp_path / "c.yaml")
    over.update(parse_set_options(["train.batch_size=8", "betas_g=0.0,0.99", "flip=yes"]))
    cfg = apply_overrides(cfg, over)
    assert (cfg.train.lr_g, cfg.train.batch_size, cfg.model.ngf) == (0.001, 8, 16)
    assert cfg.train.betas_g == (0.0, 0.99) and cfg.data.flip is True
    assert cfg.model.resolution == 28  # untouched preset value
    assert apply_overrides(cfg, load_config_file(tmp_path / "c.json")).train.lr_d == 0.003


@pytest.mark.parametrize("over,message", [
    ({"train.lr_gg": 1}, "did you mean 'train.lr_g'"),
    ({"labels": "one-side"}, "did you mean 'one-sided'"),
    ({"model.channels": 2}, "one of 1, 3"),
    ({"train.batch_size": "many"}, "bad value 'many'"),
    ({"train.betas_d": "0.5"}, "expected 2"),
    ({"model.prior": "uniform", "model.truncation": 1.5}, r"\(0, 1\]"),
    ({"train.ema_decay": 1.0}, r"\[0, 1\)"),
    ({"train.compile_mode": "reduce-overhead"}, "one of default, max-autotune-no-cudagraphs"),
    ({"train.cuda_graphs": True, "train.amp": "fp16"}, "cannot run with train.compile"),
    ({"train.cuda_graphs": True, "train.device": "cpu"}, "or the cpu device"),
    # values that would pass every range check and fail later, inside training
    ({"model.truncation": "inf"}, "expected a finite number"),
    ({"model.truncation": float("nan")}, "expected a finite number"),
    ({"model.truncation": "1e-9"}, "below the normal prior's minimum"),
    ({"train.lr_g": "nan"}, "expected a finite number"),
    ({"train.lr_d": float("inf")}, "expected a finite number"),
    ({"train.steps": True}, "expected a number"),  # YAML `steps: true`
    ({"train.steps": "inf"}, "expected an integer"),
    ({"train.steps": float("inf")}, "expected an integer"),
    ({"train.compile": 5}, "expected true or false"),
    ({"name": "x", "data.path": ["a", "b"]}, "expected text"),
])
def test_bad_values_are_clear(over, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), over)


def test_unknown_preset_and_bad_set():
    with pytest.raises(ConfigError, match="did you mean 'faces-64'"):
        preset_config("faces64")
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_options(["train.lr_g"])


def test_train_flags_are_the_schemas_declarations():
    """gantool train has one flag per option the schema marks, spelt as declared, and no
    configuration flag of its own: each is written once, in gantool.config.schema."""
    from gantool.cli.main import command
    from gantool.cli.train import config_flags
    from gantool.cli.train import config_options as options

    params = {p.name: p for p in command().commands["train"].params}
    declared = [o for o in options() if o.flag]
    assert declared == config_flags() and len(declared) >= 20
    for o in declared:
        p = params[o.name]
        assert "/".join(p.opts + p.secondary_opts) == o.flag and p.default is None
        assert p.help.startswith(o.help.replace("[", "\\[")), o.key
    own = {"preset", "config", "set_", "resume", "name", "list_presets", "out", "progress",
           "progress_every", "max_time"}
    assert set(params) == own | {o.name for o in declared}


@pytest.mark.slow  # trains a step: the full tier
def test_train_flags_reach_the_run_configuration(tmp_path):
    from conftest import gantool_cli

    r = gantool_cli("train", "--preset", "fashion-mnist", "--data", "builtin:fashion-mnist",
                    "--steps", "1", "--lr-g", "0.001", "--labels", "two-sided", "--flip",
                    "--seed", "3", "--ngf", "8", "--ndf", "8", "--batch-size", "4",
                    "--sample-every", "1", "--checkpoint-every", "1", "--out", str(tmp_path),
                    "--no-progress")
    assert r.returncode == 0, r.stderr
    saved = json.loads(next(tmp_path.glob("*/config.json")).read_text())
    assert (saved["train"]["lr_g"], saved["train"]["labels"], saved["data"]["flip"],
            saved["train"]["seed"], saved["model"]["ngf"]) == (0.001, "two-sided", True, 3, 8)
    assert saved["model"]["resolution"] == 28  # untouched: the preset's
    r = gantool_cli("train", "--preset", "fashion-mnist", "--data", "builtin:fashion-mnist",
                    "--labels", "one-side", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "did you mean 'one-sided'" in r.stderr
