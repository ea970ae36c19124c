"""Augmented calibration inputs for end-to-end palette tuning (`pipeline.palettize.tune`).

Tuning fits thousands of continuous parameters to the dense model's outputs; on a calibration
batch of a few photos or a thousand sentences it overfits (measured on MiniLM: 4,096 augmented
sentences tune to a higher held-out cosine than the 1,024 plain ones). Every input here is made
from calibration material only, never from the evaluation set:

* ``images``: random resized crops (15-100 % of the area, aspect 3:4 to 4:3) of the calibration
  photos, half of them mirrored, with brightness and contrast jitter;
* ``sentences``: calibration-pool sentences, 30 % of them joined with a second one, half of them
  with 15 % of their words dropped;
* ``default``: more digits of the train split (real data, no augmentation needed);
* ``random``: fresh seeded normal inputs; ``file:PATH``: the calibration rows as they are.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.sources import LoadedModel

CROP_AREA = (0.15, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
BRIGHTNESS = 0.08  # added, in [0, 1] pixel units
CONTRAST = 0.2  # relative
JOIN_FRACTION = 0.3
DROP_FRACTION = 0.5
WORD_DROP = 0.15


def augmented_calibration(kind: str, loaded: LoadedModel, calibration: np.ndarray, n: int,
                          seed: int) -> np.ndarray:
    """``n`` tuning inputs for data source ``kind`` (resolved, not ``auto``)."""
    rng = np.random.default_rng(seed + 1)
    if kind == "images":
        return _photos(loaded, n, rng)
    if kind == "sentences":
        return loaded.metadata["tokenize"](_sentences(n, rng))
    if kind == "default":
        from pipeline.data import load_default_dataset

        x_train, _ = load_default_dataset("train")
        return x_train[np.sort(rng.choice(len(x_train), min(n, len(x_train)), replace=False))]
    if kind == "random":
        return loaded.example_input(batch=n, seed=seed + 1).numpy()
    return calibration


def random_crop(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One random resized crop of ``image`` (H, W, 3 in [0, 1]), maybe mirrored, jittered."""
    from skimage.transform import resize

    h, w = image.shape[:2]
    area = h * w * rng.uniform(*CROP_AREA)
    aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
    ch = max(1, min(h, round(math.sqrt(area / aspect))))
    cw = max(1, min(w, round(math.sqrt(area * aspect))))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    view = resize(image[top:top + ch, left:left + cw], size, anti_aliasing=True).astype(np.float32)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    jittered = view * rng.uniform(1 - CONTRAST, 1 + CONTRAST) + rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    return np.clip(jittered, 0.0, 1.0).astype(np.float32)


def _photos(loaded: LoadedModel, n: int, rng: np.random.Generator) -> np.ndarray:
    from pipeline.fidelity.data import _read_photo, _to_model_input, calibration_photo_paths

    photos = [_read_photo(p) for p in calibration_photo_paths()]
    size = (int(loaded.input_shape[2]), int(loaded.input_shape[3]))
    return _to_model_input([random_crop(photos[k % len(photos)], size, rng) for k in range(n)], loaded)


def _sentences(n: int, rng: np.random.Generator) -> list[str]:
    from pipeline.fidelity.data import sentence_split

    _, pool = sentence_split()
    out = []
    for _ in range(n):
        words = pool[rng.integers(len(pool))].split()
        if rng.random() < JOIN_FRACTION:
            words = words + pool[rng.integers(len(pool))].split()
        if rng.random() < DROP_FRACTION:
            kept = [w for w, keep in zip(words, rng.random(len(words)) > WORD_DROP, strict=True) if keep]
            words = kept or words
        out.append(" ".join(words))
    return out
