"""Run exported files on the host: onnxruntime and LiteRT (ai-edge-litert), plus latency helpers.

No torch here: the device side and the simulated phone may call these. Both runners accept a batch
of any size: when the file has a fixed batch of 1 they run sample by sample and stack the results.

ONNX Runtime folds a palette's decode (Cast -> Gather [-> Mul] on constant initializers) back into a
dense fp32 weight when the session starts (the ``ConstantFolding`` graph optimizer). That keeps the
small file on disk and the speed of dense, but costs fp32 memory. ``keep_palette=True`` disables
exactly that optimizer so the decode runs on every inference (uint8 indices stay in memory; slower).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from converters.errors import ExportUnavailableError, ModelFileError
from pipeline.errors import DataError

#: The onnxruntime graph optimizer that folds constant subgraphs (the palette decode) at load time.
ORT_CONSTANT_FOLDING = "ConstantFolding"


def _check_file(path: Path, kind: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{kind} file {path} does not exist", next_step="Check the path.", path=str(path))
    if path.stat().st_size == 0:
        raise ModelFileError(f"{kind} file {path} is empty", next_step="Export it again.", path=str(path))
    return path


def onnx_session(path: Path | str, threads: int = 1, keep_palette: bool = False):
    """An onnxruntime CPU session; ``keep_palette`` turns off ConstantFolding (see module doc)."""
    import onnxruntime as ort

    path = _check_file(Path(path), "ONNX")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    kwargs = {"disabled_optimizers": [ORT_CONSTANT_FOLDING]} if keep_palette else {}
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], **kwargs)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise ModelFileError(
            f"ONNX file {path} cannot be loaded by onnxruntime ({type(err).__name__}: {str(err)[:300]})",
            next_step="The file is truncated or not an ONNX model; export it again.",
            path=str(path),
        ) from err


def _run_batched(run_one: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, fixed_batch: int | None):
    if fixed_batch is None or x.shape[0] == fixed_batch:
        return run_one(x)
    if fixed_batch != 1:
        raise ModelFileError(f"the file takes a fixed batch of {fixed_batch}, got {x.shape[0]}",
                             next_step=f"Pass inputs in batches of {fixed_batch}.")
    parts = [run_one(x[i : i + 1]) for i in range(x.shape[0])]
    return [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(parts[0]))]


def onnx_runner(path: Path | str, threads: int = 1, keep_palette: bool = False
                ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A callable x -> every output (list, in graph order), built once (for timing loops)."""
    session = onnx_session(path, threads=threads, keep_palette=keep_palette)
    inp = session.get_inputs()[0]
    batch_dim = inp.shape[0] if inp.shape else None
    fixed = batch_dim if isinstance(batch_dim, int) else None

    def run_one(x: np.ndarray) -> list[np.ndarray]:
        try:
            return [np.asarray(o) for o in session.run(None, {inp.name: np.ascontiguousarray(x, np.float32)})]
        except Exception as err:  # onnxruntime's InvalidArgument/Fail: wrong shape, type, or a broken graph
            raise DataError(f"onnxruntime could not run {Path(path).name} on an input of shape {list(x.shape)} "
                            f"(the file expects {inp.shape}): {str(err)[:300]}",
                            next_step="Pass an input of the file's shape (see the bundle's input_shape).",
                            path=str(path)) from err

    return lambda x: _run_batched(run_one, np.asarray(x, np.float32), fixed)


def run_onnx_outputs(path: Path | str, x: np.ndarray, threads: int = 1, keep_palette: bool = False
                     ) -> list[np.ndarray]:
    return onnx_runner(path, threads=threads, keep_palette=keep_palette)(x)


def run_onnx(path: Path | str, x: np.ndarray, threads: int = 1, keep_palette: bool = False) -> np.ndarray:
    """The first output of an ONNX file for input ``x`` (onnxruntime, CPU)."""
    return run_onnx_outputs(path, x, threads=threads, keep_palette=keep_palette)[0]


def tflite_runner(path: Path | str, threads: int = 1) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A callable x -> every output for a .tflite file (ai-edge-litert interpreter)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ExportUnavailableError("ai-edge-litert is not installed, so TFLite files cannot run here",
                                     next_step="pip install ai-edge-litert") from err
    path = _check_file(Path(path), "TFLite")
    try:
        interp = Interpreter(model_path=str(path), num_threads=int(threads))
        interp.allocate_tensors()
    except Exception as err:
        raise ModelFileError(
            f"TFLite file {path} cannot be loaded by LiteRT ({type(err).__name__}: {str(err)[:300]})",
            next_step="The file is truncated or not a TFLite model; export it again.",
            path=str(path),
        ) from err
    detail = interp.get_input_details()[0]
    fixed_batch = int(detail["shape"][0]) if len(detail["shape"]) else None
    outputs = interp.get_output_details()

    def run_one(x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=detail["dtype"])
        if tuple(detail["shape"]) != x.shape:
            interp.resize_tensor_input(detail["index"], x.shape)
            interp.allocate_tensors()
        interp.set_tensor(detail["index"], x)
        interp.invoke()
        return [np.array(interp.get_tensor(o["index"])) for o in outputs]

    return lambda x: _run_batched(run_one, np.asarray(x, np.float32), fixed_batch)


def run_tflite_outputs(path: Path | str, x: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    return tflite_runner(path, threads=threads)(x)


def run_tflite(path: Path | str, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """The first output of a TFLite file for input ``x`` (LiteRT interpreter, CPU)."""
    return run_tflite_outputs(path, x, threads=threads)[0]


def runner_for(path: Path | str, threads: int = 1, keep_palette: bool = False
               ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Pick the runtime from the file suffix (.onnx or .tflite)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return onnx_runner(path, threads=threads, keep_palette=keep_palette)
    if suffix == ".tflite":
        return tflite_runner(path, threads=threads)
    raise ModelFileError(f"{path}: unknown model file type {suffix!r}; expected .onnx or .tflite",
                         next_step="Rename the file or pass an ONNX/TFLite model.", path=str(path))


def latency_ms(run: Callable[[np.ndarray], object], x: np.ndarray, runs: int = 20, warmup: int = 3,
               min_duration_s: float = 0.0) -> dict:
    """Wall-clock latency of ``run(x)``: median, p90, mean, min over ``runs`` timed calls after warm-up."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for _ in range(max(0, warmup)):
        run(x)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < runs or (time.perf_counter() - start) < min_duration_s:
        t0 = time.perf_counter()
        run(x)
        samples.append((time.perf_counter() - t0) * 1e3)
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "mean_ms": statistics.fmean(samples),
        "min_ms": ordered[0],
        "runs": len(samples),
    }


def host_latency_ms(path: Path | str, x: np.ndarray, threads: int = 1, runs: int = 20, warmup: int = 3,
                    keep_palette: bool = False) -> dict:
    """Host CPU latency of one file (runtime chosen by suffix); the dict names runtime and threads."""
    run = runner_for(path, threads=threads, keep_palette=keep_palette)
    stats = latency_ms(run, x, runs=runs, warmup=warmup)
    runtime = "onnxruntime" if Path(path).suffix.lower() == ".onnx" else "litert"
    stats.update(runtime=runtime, threads=int(threads), keep_palette=bool(keep_palette), device="host-cpu")
    return stats
