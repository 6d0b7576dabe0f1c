"""``unifygeo bench model``: per-branch latency and peak memory, PyTorch eager vs ONNX Runtime CPU.

Each backend is measured in a fresh subprocess so that its peak resident memory is its
own. Latency is the median (and 90th percentile) of ``repeats`` timed runs after
``warmup`` untimed ones. Cases: ground branch batch 1 (and batch R, the sub-stride
copies of the unknown-heading search), aerial branch batch 1 and 5, decoder batch 1 and 5
(five re-ranking candidates).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def _proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MiB (VmRSS: now; VmHWM: peak of this address
    space; unlike ru_maxrss, VmHWM is not inherited across fork+exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not found in /proc/self/status")


def rss_mb() -> float:
    """Resident memory of this process now, MiB (NaN where /proc is not available)."""
    try:
        return _proc_status_mb("VmRSS")
    except OSError:
        return float("nan")


def _time(fn, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3),
            "p90_ms": round(samples[min(len(samples) - 1, int(0.9 * len(samples)))], 3),
            "runs": repeats}


def _cases(cfg) -> list[tuple[str, str, int]]:
    cases = [("ground_b1", "ground", 1)]
    if cfg.heading_subdivisions > 1:
        cases.append((f"ground_b{cfg.heading_subdivisions}_heading_search", "ground", cfg.heading_subdivisions))
    cases += [("aerial_b1", "aerial", 1), ("aerial_b5", "aerial", 5), ("decoder_b1", "decoder", 1),
              ("decoder_b5", "decoder", 5)]
    return cases


def _case_inputs(model) -> dict[str, tuple[str, list]]:
    """numpy inputs of every case, made once in the parent so the workers share them."""
    from ..backends.export import example_inputs

    out = {}
    for name, part, batch in _cases(model.cfg):
        if part == "ground":
            ground = example_inputs(model, batch=1)["ground"]
            inputs = [t[:1].expand(batch, *t.shape[1:]).contiguous() for t in ground]
        else:
            inputs = list(example_inputs(model, batch=batch)[part])
        out[name] = (part, [t.numpy() for t in inputs])
    return out


def _worker(backend: str, config: str, onnx_dir: str, inputs_path: str, repeats: int, warmup: int,
            threads: int, queue) -> None:
    """Runs in a fresh process; the ONNX Runtime path never imports torch."""
    try:
        import pickle

        with open(inputs_path, "rb") as f:
            cases = pickle.load(f)
        baseline = rss_mb()
        results: dict = {}
        if backend == "torch":
            import torch

            from ..backends.export import DecoderModule
            from ..model.unifygeo import UnifyGeo

            torch.set_num_threads(threads)
            baseline = rss_mb()
            torch.manual_seed(0)
            model = UnifyGeo(config).eval()
            modules = {"ground": model.ground, "aerial": model.aerial, "decoder": DecoderModule(model)}
            for name, (part, arrays) in cases.items():
                tensors = [torch.from_numpy(a) for a in arrays]

                def run(module=modules[part], tensors=tensors):
                    with torch.inference_mode():
                        module(*tensors)
                results[name] = _time(run, repeats, warmup)
        else:
            from ..backends.ort_session import make_session
            from ..onnx_names import FILES

            sessions = {k: make_session(Path(onnx_dir) / f, threads) for k, f in FILES.items()}
            for name, (part, arrays) in cases.items():
                sess = sessions[part]
                feed = {i.name: a for i, a in zip(sess.get_inputs(), arrays)}

                def run(sess=sess, feed=feed):
                    sess.run(None, feed)
                results[name] = _time(run, repeats, warmup)
        peak = _proc_status_mb("VmHWM")
        results["peak_rss_mb"] = round(peak, 1)
        results["peak_rss_over_imports_mb"] = round(peak - baseline, 1)
        queue.put(("ok", results))
    except Exception as exc:  # reported to the parent, which raises
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def bench_model(config: str, repeats: int = 20, warmup: int = 3, threads: int | None = None,
                backends: tuple[str, ...] = ("torch", "onnxruntime")) -> dict:
    import pickle

    import torch

    from ..backends.export import export_onnx
    from ..model.unifygeo import UnifyGeo

    threads = threads or os.cpu_count() or 1
    report = {"config": config, "repeats": repeats, "warmup": warmup, "threads": threads,
              "machine": machine_info(), "backends": {}}
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = UnifyGeo(config).eval()
        inputs_path = str(Path(tmp) / "inputs.pkl")
        with open(inputs_path, "wb") as f:
            pickle.dump(_case_inputs(model), f)
        if "onnxruntime" in backends:
            export_onnx(model, tmp)
        del model
        for backend in backends:
            queue = ctx.Queue()
            proc = ctx.Process(target=_worker,
                               args=(backend, config, tmp, inputs_path, repeats, warmup, threads, queue))
            proc.start()
            status, payload = queue.get()
            proc.join()
            if status != "ok":
                raise RuntimeError(f"benchmark of {backend} failed: {payload}")
            report["backends"][backend] = payload
    return report


def format_report(report: dict) -> str:
    backends = list(report["backends"])
    cases = [k for k, v in report["backends"][backends[0]].items() if isinstance(v, dict)]
    lines = [f"config {report['config']}, {report['threads']} threads, median of {report['repeats']} runs "
             f"on {report['machine']['cpu']} ({report['machine']['cpu_count']} cores)",
             f"{'case':34s}" + "".join(f"{b:>16s}" for b in backends)]
    for case in cases:
        lines.append(f"{case:34s}" + "".join(f"{report['backends'][b][case]['median_ms']:13.1f} ms" for b in backends))
    lines.append(f"{'peak RSS':34s}" + "".join(f"{report['backends'][b]['peak_rss_mb']:13.0f} MB" for b in backends))
    return "\n".join(lines)
