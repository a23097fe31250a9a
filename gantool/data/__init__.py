"""Image datasets loaded into memory as (N, C, R, R) uint8 arrays at the training resolution."""

from gantool.data.dataset import BUILTIN_DATASETS, ImageSet, load_dataset

__all__ = ["BUILTIN_DATASETS", "ImageSet", "load_dataset"]
