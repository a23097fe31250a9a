"""Run configuration: a schema of frozen dataclasses, named presets, JSON/YAML round-trip and
overrides.

Precedence when a run is configured: preset < config file < overrides (the CLI's flags and
``--set``). Options are validated once here, written to ``config.json`` in the run directory,
then handed to the training loop as plain values.

- ``schema``: every option declared once (default, help, allowed values), grouped; the leaf;
- ``checks``: the checks of a whole configuration (imports ``schema``);
- ``parse``: files, ``key=value`` overrides, stored configurations, and strings to each
  option's type (imports ``schema`` and ``checks``);
- ``presets``: the named configurations, each with its source and measurements.
"""

from gantool.config.checks import (
    augment_policy,
    duration,
    sample_cadence,
    validate,
    validate_model,
)
from gantool.config.parse import (
    apply_overrides,
    batch_for,
    load_config_file,
    model_config,
    parse_set_options,
    run_config,
)
from gantool.config.presets import (
    MARCHESI_BATCH_SIZES,
    PRESETS,
    Preset,
    preset_config,
    preset_names,
    preset_sets,
    preset_summary,
)
from gantool.config.schema import (
    AMP_MODES,
    ARCHS,
    AUGMENTS,
    COMPILE_MODES,
    D_ARCHS,
    DEVICES,
    EVAL_METRICS,
    EXTRA_UPDATES,
    FITS,
    LABEL_SMOOTHING,
    LOSSES,
    SECTIONS,
    DataConfig,
    ModelConfig,
    Option,
    RunConfig,
    TrainConfig,
    all_keys,
    options,
)

__all__ = [
    "AMP_MODES", "ARCHS", "AUGMENTS", "COMPILE_MODES", "D_ARCHS", "DEVICES", "EVAL_METRICS",
    "EXTRA_UPDATES", "FITS", "LABEL_SMOOTHING", "LOSSES", "MARCHESI_BATCH_SIZES", "PRESETS",
    "SECTIONS", "DataConfig", "ModelConfig", "Option", "Preset", "RunConfig",
    "TrainConfig", "all_keys", "apply_overrides", "augment_policy", "batch_for", "duration",
    "load_config_file", "model_config", "options", "parse_set_options", "preset_config",
    "preset_names", "preset_sets", "preset_summary", "run_config", "sample_cadence",
    "validate", "validate_model",
]
