"""CIFAR data for kdlib: find it in any accepted layout, verify it, cache it, serve it fast.

``load_dataset("cifar10")`` returns the whole dataset as uint8 arrays from a verified
cache (preparing it on first use); ``DeviceLoader`` then serves augmented, normalized
batches from device memory.
"""

from kdlib.data.augment import crop_flip, normalize, normalize_affine, random_crop_flip
from kdlib.data.autoaugment import (
    CIFAR10_POLICY,
    apply_subpolicies,
    cifar10_autoaugment,
    draw_subpolicies,
)
from kdlib.data.cache import CifarData, cached_meta, load_dataset, prepare_dataset
from kdlib.data.loader import DeviceLoader
from kdlib.data.registry import DATASETS, dataset_stats
from kdlib.data.split import split_validation, subset_indices

__all__ = [
    "CIFAR10_POLICY",
    "DATASETS",
    "CifarData",
    "cached_meta",
    "DeviceLoader",
    "apply_subpolicies",
    "cifar10_autoaugment",
    "crop_flip",
    "dataset_stats",
    "draw_subpolicies",
    "load_dataset",
    "normalize",
    "normalize_affine",
    "prepare_dataset",
    "random_crop_flip",
    "split_validation",
    "subset_indices",
]
