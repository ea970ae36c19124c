"""Data for fidelity measurements: an evaluation set and a disjoint calibration batch, offline.

Why disjoint: sensitivities and budgets are fitted on the calibration batch; scoring on the same
inputs would flatter them. Every source here splits its material so that no evaluation input
(nor a flip or crop of one) is used for calibration.

Sources (``--data``):

* ``default``: the default model's labelled digits (calibration from the train split, evaluation
  on the test split, which is labelled, so accuracy is reported too).
* ``images``: natural photos shipped inside scikit-image (``skimage/data``), square crops at three
  scales and five positions, each also mirrored, resized to the model's input and normalised with
  the model's mean/std. Calibration photos are a separate set from evaluation photos: five more of
  scikit-image's, plus the natural photos that matplotlib (``grace_hopper.jpg``) and scikit-learn
  (``china.jpg``, ``flower.jpg``) ship, where installed. Most of scikit-image's spare photos are
  microscope, retina and synthetic images; the three everyday photos make the calibration batch
  look more like what a phone's camera sees (measured on EfficientNet-Lite0: a lower KL to the
  dense model on the evaluation photos than with the five alone).
* ``sentences``: English sentences from the docstrings of Python standard-library modules,
  tokenised with the model's tokenizer; calibration and evaluation use different modules, and
  calibration also draws on about a hundred more modules (`CALIBRATION_SENTENCE_MODULES`), about
  1,600 sentences in all: GPTQ's statistics of a 1536-wide layer need thousands of tokens
  (measured on MiniLM: 1,024 calibration sentences give a higher cosine to the dense model than 256).
* ``random``: seeded standard-normal inputs of the model's shape (a fallback for any model).
* ``file:PATH`` (``.npy`` with inputs, or ``.npz`` with ``x`` and optional ``y``): the first
  rows calibrate (``calibration`` of them), the rest evaluate.
* ``tuning=N`` (CLI ``--tune-inputs``): N augmented calibration inputs for end-to-end tuning
  (`pipeline.fidelity.augment`), never made from evaluation material; ``augment=N`` (CLI
  ``--augment``) adds N other augmented inputs to the calibration batch itself, so sensitivities
  and GPTQ's statistics see them too (for models whose calibration material is a few photos).
* ``auto``: ``default`` for the default model, ``images`` for image models with 3 input channels,
  ``sentences`` for sentence encoders, else ``random``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pipeline.sources import LoadedModel

DATA_SOURCES = ("auto", "default", "images", "sentences", "random", "file:PATH")

#: photos in skimage/data used for evaluation, and the disjoint set used for calibration
EVAL_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png", "coins.png", "moon.png",
               "horse.png", "brick.png", "grass.png", "gravel.png", "page.png", "text.png", "clock_motion.png",
               "logo.png", "color.png")
CALIBRATION_PHOTOS = ("motorcycle_right.png", "cell.png", "microaneurysms.png", "phantom.png",
                      "chessboard_RGB.png")
#: natural photos that other packages ship, also used for calibration: (package, path inside it)
PACKAGED_CALIBRATION_PHOTOS = (("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
                               ("sklearn", "datasets/images/china.jpg"),
                               ("sklearn", "datasets/images/flower.jpg"))
#: standard-library modules whose docstrings give the sentences
SENTENCE_MODULES = (
    "os", "json", "re", "collections", "functools", "itertools", "pathlib", "argparse", "logging",
    "subprocess", "threading", "asyncio", "email.message", "http.client", "urllib.parse", "csv", "datetime",
    "decimal", "fractions", "statistics", "random", "string", "textwrap", "shutil", "tempfile", "zipfile",
    "tarfile", "unittest", "inspect", "typing", "dataclasses", "enum", "heapq", "bisect", "socket",
    "sqlite3", "pickle", "copy", "pprint", "difflib", "html.parser", "xml.etree.ElementTree", "calendar",
    "hashlib", "base64", "struct", "io", "glob", "fnmatch", "queue", "sched", "contextlib", "abc",
    "numbers", "operator", "weakref", "traceback", "warnings", "codecs", "locale", "gettext", "platform",
    "configparser", "imaplib", "smtplib", "ftplib", "mailbox", "optparse", "getopt", "selectors",
    "multiprocessing.pool", "concurrent.futures", "zoneinfo", "graphlib", "ipaddress", "uuid", "secrets",
    "tomllib", "wave", "zlib", "gzip", "bz2", "lzma", "filecmp", "stat", "shlex", "cmd", "code", "pdb",
    "timeit", "trace", "tracemalloc", "ast", "dis", "tokenize", "keyword", "importlib", "pkgutil",
)

#: more modules (none of the above) whose docstrings only calibrate: their sentences join the
#: calibration pool, so GPTQ's statistics rest on several times more tokens
CALIBRATION_SENTENCE_MODULES = (
    "array", "atexit", "bdb", "binascii", "builtins", "cProfile", "cmath", "codeop", "colorsys",
    "compileall", "contextvars", "copyreg", "ctypes", "ctypes.util", "doctest", "email.utils", "email.parser",
    "email.headerregistry", "email.policy", "email.mime.text", "encodings", "errno", "faulthandler", "fileinput",
    "gc", "getpass", "hmac", "html", "http.server", "http.cookies", "http.cookiejar", "linecache", "math",
    "mimetypes", "mmap", "modulefinder", "netrc", "pickletools", "plistlib", "poplib", "profile", "pstats",
    "pty", "py_compile", "pyclbr", "pydoc", "quopri", "reprlib", "rlcompleter", "runpy", "select", "shelve",
    "signal", "site", "socketserver", "symtable", "sys", "sysconfig", "tabnanny", "time", "token", "tty",
    "types", "unicodedata", "urllib.request", "urllib.error", "urllib.robotparser", "wsgiref.simple_server",
    "wsgiref.handlers", "xml.dom.minidom", "xml.sax", "xmlrpc.client", "xmlrpc.server", "zipapp", "zipimport",
    "logging.handlers", "logging.config", "unittest.mock", "importlib.metadata", "importlib.resources",
    "concurrent.futures.thread", "concurrent.futures.process", "multiprocessing.managers",
    "multiprocessing.queues", "asyncio.tasks", "asyncio.streams", "asyncio.subprocess", "collections.abc",
    "json.decoder", "json.encoder", "os.path", "sqlite3.dbapi2",
)


@dataclass
class FidelityData:
    """Evaluation inputs (and labels where known) plus a disjoint calibration batch."""

    name: str
    x: np.ndarray
    calibration: np.ndarray
    y: np.ndarray | None = None
    description: str = ""
    tuning: np.ndarray | None = None  # inputs for ``tune_epochs`` (augmented calibration), if asked


def resolve_source(source: str, loaded: LoadedModel) -> str:
    if source != "auto":
        return source
    task = loaded.metadata.get("task")
    if loaded.name == "default":
        return "default"
    if task == "encoder" and "tokenize" in loaded.metadata:
        return "sentences"
    if len(loaded.input_shape) == 4 and loaded.input_shape[1] == 3:
        return "images"
    return "random"


def load_data(source: str, loaded: LoadedModel, *, samples: int | None = None, calibration: int = 16,
              seed: int = 0, tuning: int = 0, augment: int = 0) -> FidelityData:
    """The evaluation set (at most ``samples`` rows, a seeded subset) and ``calibration`` rows;
    with ``tuning``, also that many augmented calibration inputs (`pipeline.fidelity.augment`);
    with ``augment``, that many more augmented inputs join the calibration rows."""
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise ConfigError(f"samples must be a positive integer (got {samples!r})", field="samples")
    if not isinstance(calibration, int) or calibration < 1:
        raise ConfigError(f"calibration must be a positive integer (got {calibration!r})", field="calibration")
    for name, n in (("tuning", tuning), ("augment", augment)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{name} must be a whole number of inputs, 0 for none (got {n!r})", field=name)
    kind = resolve_source(source, loaded)
    if kind == "default":
        data = _default(calibration, seed)
    elif kind == "images":
        data = _images(loaded, calibration, seed)
    elif kind == "sentences":
        data = _sentences(loaded, calibration, seed)
    elif kind == "random":
        data = _random(loaded, samples or 64, calibration, seed)
    elif kind.startswith("file:"):
        data = _file(Path(kind[5:]).expanduser(), calibration)
    else:
        raise ConfigError(f"unknown data source {source!r}; choose one of {', '.join(DATA_SOURCES)}",
                          next_step="Pass --data auto, or one of those sources.", field="data")
    if samples is not None and len(data.x) > samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(data.x), samples, replace=False))
        data.x = data.x[pick]
        data.y = None if data.y is None else data.y[pick]
    if tuning or augment:  # one draw (photos and sentences read once): the tuning rows, then the extra ones
        from pipeline.fidelity.augment import augmented_calibration

        rows = augmented_calibration(kind, loaded, data.calibration, tuning + augment, seed)
        if tuning:
            data.tuning = rows if rows is data.calibration else rows[:tuning]
        if augment and rows is not data.calibration:  # file: sources have nothing to augment with
            extra = rows[tuning:]
            data.calibration = np.concatenate([data.calibration, extra])
            data.description += f" (+{len(extra)} augmented)"
    return data


# ------------------------------------------------------------------------------------------------


def _default(calibration: int, seed: int) -> FidelityData:
    from pipeline.data import load_default_dataset

    x_train, _ = load_default_dataset("train")
    x_test, y_test = load_default_dataset("test")
    pick = np.random.default_rng(seed).choice(len(x_train), min(calibration, len(x_train)), replace=False)
    return FidelityData("default", x=x_test, y=y_test, calibration=x_train[np.sort(pick)],
                        description=f"default test split ({len(x_test)} labelled digits)")


def skimage_data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise DataError("the 'images' data source needs scikit-image (its package ships the photos)",
                        next_step="Install it: pip install 'vit-palette-bench[pretrained]'.") from None
    return Path(skimage.__file__).parent / "data"


def packaged_photo_paths(photos: tuple[tuple[str, str], ...] = PACKAGED_CALIBRATION_PHOTOS) -> list[Path]:
    """The files of ``photos`` that are installed (found without importing their packages)."""
    import importlib.util

    out = []
    for package, rel in photos:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            path = Path(root) / rel
            if path.is_file():
                out.append(path)
                break
    return out


def _read_photo(path: Path) -> np.ndarray:
    """float32 RGB in [0, 1], (H, W, 3)."""
    import skimage.io

    im = np.asarray(skimage.io.imread(str(path)))
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    im = im[..., :3]
    if im.dtype == np.uint8:
        return im.astype(np.float32) / 255.0
    im = im.astype(np.float32)
    return (im - im.min()) / max(float(im.max() - im.min()), 1e-12)


def photo_views(image: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """Square crops (full, 80 % and 60 % of the short side; centre and four corners for the smaller
    ones), each plain and mirrored, resized to ``size`` (H, W)."""
    from skimage.transform import resize

    h, w = image.shape[:2]
    side = min(h, w)
    views = []
    for frac, spots in ((1.0, ("c",)), (0.8, ("c", "tl", "tr", "bl", "br")), (0.6, ("c", "tl", "tr", "bl", "br"))):
        s = max(1, int(round(side * frac)))
        for spot in spots:
            top = {"c": (h - s) // 2, "tl": 0, "tr": 0, "bl": h - s, "br": h - s}[spot]
            left = {"c": (w - s) // 2, "tl": 0, "tr": w - s, "bl": 0, "br": w - s}[spot]
            crop = resize(image[top:top + s, left:left + s], size, anti_aliasing=True).astype(np.float32)
            views.append(crop)
            views.append(crop[:, ::-1])
    return views


def _to_model_input(views: list[np.ndarray], loaded: LoadedModel) -> np.ndarray:
    x = np.stack(views).transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.asarray(loaded.input_mean or (0.0, 0.0, 0.0), dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(loaded.input_std or (1.0, 1.0, 1.0), dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - mean) / std)


def _images(loaded: LoadedModel, calibration: int, seed: int) -> FidelityData:
    shape = loaded.input_shape
    if len(shape) != 4 or shape[1] != 3:
        raise DataError(f"the 'images' data source makes RGB images; {loaded.name} takes input {shape}",
                        next_step="Use --data random or --data file:inputs.npy for this model.")
    folder = skimage_data_dir()
    size = (int(shape[2]), int(shape[3]))

    def collect(paths: list[Path]) -> tuple[list[np.ndarray], list[str]]:
        views, used = [], []
        for path in paths:
            if path.is_file():
                views.extend(photo_views(_read_photo(path), size))
                used.append(path.name)
        return views, used

    eval_views, eval_used = collect([folder / n for n in EVAL_PHOTOS])
    cal_views, cal_used = collect(calibration_photo_paths())
    if not eval_used or not cal_used:
        raise DataError(f"scikit-image's photos are missing under {folder}",
                        next_step="Reinstall scikit-image.")
    rng = np.random.default_rng(seed)
    cal = [cal_views[i] for i in np.sort(rng.choice(len(cal_views), min(calibration, len(cal_views)),
                                                    replace=False))]
    return FidelityData(
        "images", x=_to_model_input(eval_views, loaded), calibration=_to_model_input(cal, loaded),
        description=f"{len(eval_views)} views (crops, mirrors) of {len(eval_used)} scikit-image photos; "
        f"calibration from {len(cal_used)} other photos",
    )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z][a-z']+")


def english_sentences(modules: tuple[str, ...] = SENTENCE_MODULES) -> list[tuple[str, str]]:
    """(module, sentence) pairs from standard-library docstrings: prose only, 6 to 40 words,
    de-duplicated, in a fixed order."""
    with warnings.catch_warnings():  # reading deprecated aliases (typing.io, ...) warns; harmless here
        warnings.simplefilter("ignore", DeprecationWarning)
        return _english_sentences(modules)


def _english_sentences(modules: tuple[str, ...]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for mod_name in modules:
        try:
            mod = importlib.import_module(mod_name)
        except Exception:  # noqa: BLE001 - a platform may lack a module; skip it
            continue
        docs = [inspect.getdoc(mod) or ""]
        for attr in sorted(vars(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == mod.__name__:
                docs.append(inspect.getdoc(obj) or "")
        for doc in docs:
            for para in doc.split("\n\n"):
                if ">>>" in para or "::" in para or para.lstrip().startswith(("-", "*", ":")):
                    continue
                text = " ".join(para.split())
                for sent in _SENTENCE_END.split(text):
                    words = sent.split()
                    if not 6 <= len(words) <= 40 or not sent.endswith("."):
                        continue
                    if len(_WORD.findall(sent)) < 0.7 * len(words) or sent in seen:
                        continue
                    seen.add(sent)
                    out.append((mod_name, sent))
    return out


def sentence_split() -> tuple[list[str], list[str]]:
    """(evaluation sentences, calibration pool): the pool never holds an evaluation sentence."""
    eval_s: list[str] = []
    own_cal: list[str] = []
    for m, s in english_sentences():
        (own_cal if zlib.crc32(m.encode()) % 5 == 0 else eval_s).append(s)
    held = set(eval_s)
    extra = (s for _, s in english_sentences(CALIBRATION_SENTENCE_MODULES))
    return eval_s, list(dict.fromkeys(s for s in (*own_cal, *extra) if s not in held))


def calibration_photo_paths() -> list[Path]:
    """The installed calibration photos (scikit-image's spare ones and the packaged ones)."""
    folder = skimage_data_dir()
    return [p for p in [folder / n for n in CALIBRATION_PHOTOS] + packaged_photo_paths() if p.is_file()]


def _sentences(loaded: LoadedModel, calibration: int, seed: int) -> FidelityData:
    tokenize = loaded.metadata.get("tokenize")
    if tokenize is None:
        raise DataError(f"the 'sentences' data source needs a text model; {loaded.name} has no tokenizer",
                        next_step="Use a sentence-transformers:<name> model, or another --data source.")
    eval_s, cal_pool = sentence_split()
    if len(eval_s) < 20 or not cal_pool:
        raise DataError(f"found only {len(eval_s)} usable docstring sentences",
                        next_step="Use --data file:ids.npy with token ids instead.")
    rng = np.random.default_rng(seed)
    cal = [cal_pool[i] for i in np.sort(rng.choice(len(cal_pool), min(calibration, len(cal_pool)), replace=False))]
    return FidelityData("sentences", x=tokenize(eval_s), calibration=tokenize(cal),
                        description=f"{len(eval_s)} English sentences from standard-library docstrings; "
                        f"calibration from other modules")


def _random(loaded: LoadedModel, samples: int, calibration: int, seed: int) -> FidelityData:
    x = loaded.example_input(batch=samples + calibration, seed=seed).numpy()
    return FidelityData("random", x=x[calibration:], calibration=x[:calibration],
                        description=f"{samples} seeded standard-normal inputs (no natural data for this model)")


def _file(path: Path, calibration: int) -> FidelityData:
    try:
        loaded: Any = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read data file {path}: {err}",
                        next_step="Give a .npy array of inputs or a .npz with 'x' (and optional 'y').") from None
    if isinstance(loaded, np.ndarray):
        x, y = loaded, None
    else:
        if "x" not in loaded:
            raise DataError(f"{path} has no array named 'x' (has {', '.join(loaded.files)})",
                            next_step="Save the inputs as x (and labels as y): np.savez(path, x=..., y=...).")
        x = loaded["x"]
        y = loaded["y"] if "y" in loaded else None
    if len(x) <= calibration:
        raise DataError(f"{path} has {len(x)} rows; need more than the {calibration} calibration rows",
                        next_step="Add rows or lower --calibration.")
    return FidelityData(f"file:{path.name}", x=x[calibration:], calibration=x[:calibration],
                        y=None if y is None else y[calibration:],
                        description=f"{len(x) - calibration} rows of {path.name} (first {calibration} calibrate)")
