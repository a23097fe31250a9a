"""Fixed sets of option values as ``Literal`` types: Typer makes them choices, which ``--help``
lists, a typo is refused by, and shell completion offers. Each set is defined once, where its
code lives; this module only names them for the commands (light imports: no torch)."""

from __future__ import annotations

from typing import Literal

from gantool.backends import BACKENDS, PRECISIONS
from gantool.backends.triton_backend import PROTOCOLS, SHARED_MEMORY
from gantool.export.triton import ACCELERATORS, VARIANTS
from gantool.importers import KINDS
from gantool.latent import PRIORS
from gantool.model_info import OUTPUTS
from gantool.sampling.images import IMAGE_FORMATS
from gantool.sampling.pipeline import LAYOUTS

Backend = Literal[BACKENDS]
Precision = Literal[PRECISIONS]
ImageFormat = Literal[IMAGE_FORMATS]
Prior = Literal[PRIORS]
Layout = Literal[LAYOUTS]
Protocol = Literal[PROTOCOLS]
SharedMemory = Literal[SHARED_MEMORY]
TritonVariant = Literal[VARIANTS]
Accelerator = Literal[ACCELERATORS]
ExportOutput = Literal[OUTPUTS]
ImportKind = Literal[KINDS]
Engine = Literal["local", "ray"]  # generate --engine: this process, or a Ray cluster's actors
ClassMix = Literal["data", "uniform"]  # eval --class-mix: the data's proportions, or s mod K
