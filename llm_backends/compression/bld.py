"""Blockwise local distillation (BLD) of Puzzle's block library.

Puzzle (Bercovich et al., 2024, §3.2 "Blockwise local distillation"): every variant of
layer ``i`` is trained *on its own* to imitate the parent's sub-block at that layer, fed
the parent's own hidden states, so variants of different layers are independent and
train in parallel. The loss is the normalised MSE

    L = MSE(child(h), parent(h)) / MSE(parent(h), 0)

on the sub-block's contribution to the residual stream (attention: ``attn(norm(h_i))``
with ``h_i`` the residual entering layer ``i``; FFN: ``ffn(norm(m_i))`` with
``m_i = h_i + attn_parent(norm(h_i))``, the paper's decoupled attention / FFN BLD).

Steps:

1. :func:`cache_parent_activations` runs the parent once over the training windows and writes
   the residual entering every layer to disk (``activations/``), plus RoPE tables and each
   parent layer; later runs reuse it.
2. :func:`train_library` trains every layer's variants (one job per layer, spread over
   worker processes with one thread each), writes ``bld/layerNNN.pt`` (variant weights) and
   ``bld/layerNNN.json`` (held-out loss before and after training, seconds); a rerun skips
   finished layers, so an interrupted run resumes. A ``tqdm`` bar counts layers.

:class:`BlockLibrary` reads the trained variants back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from llm_backends.compression.blocks import AttentionConfig, FFNConfig
from llm_backends.compression.calibration import weights_fingerprint
from llm_backends.compression.library import (
    LibrarySpec,
    SubBlock,
    attention_name,
    build_layer_variants,
    empty_sub_block,
    variant_config,
    ffn_name,
    parent_sub_block,
)
from llm_backends.compression.model import HeteroDecoderLayer, HeteroLlamaForCausalLM

__all__ = ["BLDSettings", "BlockLibrary", "cache_parent_activations", "check_plain_parent", "train_library", "normalized_mse"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BLDSettings:
    """Training settings of blockwise local distillation.

    Attributes:
        steps: optimizer steps per variant (0: keep the initialisation, still measure the loss).
        batch_windows: windows per step.
        lr: AdamW learning rate (cosine decay to 10%).
        heldout_fraction: share of the cached windows kept out of training to measure the loss.
        seed: shuffling seed.
        linear_exact: train linear variants by solving their loss exactly instead of by AdamW.
            For a linear map ``W`` the BLD loss is the quadratic ``||X Wᵀ − Y||²`` (``X`` the
            normalised inputs, ``Y`` the parent's sub-block outputs, over all training tokens),
            whose minimiser is the ridge least-squares solution; the paper's initialisation is
            still measured as ``loss_init``.
        ridge: ridge weight of the exact solve, relative to the mean diagonal of ``XᵀX``.
    """

    steps: int = 100
    batch_windows: int = 4
    lr: float = 3e-4
    heldout_fraction: float = 0.125
    seed: int = 0
    linear_exact: bool = True
    ridge: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "batch_windows": self.batch_windows, "lr": self.lr, "heldout_fraction": self.heldout_fraction,
            "seed": self.seed, "linear_exact": self.linear_exact, "ridge": self.ridge,
        }


def normalized_mse(child: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """``MSE(child, parent) / MSE(parent, 0)`` (Puzzle §3.2); a scalar tensor. ``child=None`` means zeros."""
    return (child - parent).pow(2).mean() / parent.pow(2).mean().clamp_min(1e-12)


def _windows_id(windows: torch.Tensor) -> str:
    return hashlib.sha256(windows.numpy().tobytes()).hexdigest()[:16]


@torch.no_grad()
def cache_parent_activations(
    model: HeteroLlamaForCausalLM, windows: torch.Tensor, folder: str | os.PathLike[str], batch_size: int = 8
) -> Path:
    """Write the parent's residual stream entering each layer on ``windows`` to ``folder``.

    Files: ``h{i:03d}.pt`` — ``(N, T, hidden)`` tensors in the model's dtype for ``i`` in
    ``0..n_layers-1``; ``rope.pt`` — ``cos, sin`` ``(1, T, head_dim)``; ``layer{i:03d}.pt`` — the
    parent layer module; ``meta.json`` — model and windows ids. Reuses an existing cache made
    from the same model and windows.

    Args:
        windows: ``(N, T)`` long token windows.

    Returns:
        The folder path.

    Raises:
        ValueError: ``windows`` is not a non-empty ``(N, T)`` tensor.
    """
    if windows.dim() != 2 or len(windows) == 0:
        raise ValueError(f"windows must be a non-empty (N, T) tensor, got {tuple(windows.shape)}")
    out = Path(folder)
    meta = {"model": weights_fingerprint(model), "windows": _windows_id(windows), "n_layers": len(model.layers), "shape": list(windows.shape)}
    mf = out / "meta.json"
    if mf.is_file():
        try:
            if json.loads(mf.read_text()) == meta:
                return out
        except (OSError, ValueError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    mf.unlink(missing_ok=True)
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.layers]
    for i in range(0, len(windows), batch_size):
        hs = model(windows[i : i + batch_size], output_hidden_states=True).hidden_states
        for j in range(len(model.layers)):
            per_layer[j].append(hs[j])
    for j, parts in enumerate(per_layer):
        torch.save(torch.cat(parts).contiguous(), out / f"h{j:03d}.pt")
        torch.save(model.layers[j], out / f"layer{j:03d}.pt")
        per_layer[j] = []
    T = windows.shape[1]
    pos = torch.arange(T).unsqueeze(0)
    like = model.model.embed_tokens.weight[:1].unsqueeze(0)
    cos, sin = model.rope(pos, like)
    torch.save({"cos": cos.contiguous(), "sin": sin.contiguous()}, out / "rope.pt")
    mf.write_text(json.dumps(meta))
    return out


def _targets(layer: HeteroDecoderLayer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inputs and parent outputs of both sub-blocks for ``h`` ``(N, T, d)``."""
    c, s = cos.expand(len(h), -1, -1), sin.expand(len(h), -1, -1)
    with torch.no_grad():
        a = parent_sub_block(layer, "attention").delta(h, c, s)
        m = h + a if a is not None else h
        f = parent_sub_block(layer, "ffn").delta(m)
    return {"attn_in": h, "attn_out": a, "ffn_in": m, "ffn_out": f}


def _loss(sb: SubBlock, x: torch.Tensor, y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    out = sb.delta(x, cos.expand(len(x), -1, -1), sin.expand(len(x), -1, -1))
    if out is None:
        out = torch.zeros_like(y)
    return normalized_mse(out.float(), y.float())


def _train_one(sb: SubBlock, x: torch.Tensor, y: torch.Tensor, xh: torch.Tensor, yh: torch.Tensor, cos, sin, st: BLDSettings) -> dict[str, float]:
    with torch.no_grad():
        before = float(_loss(sb, xh, yh, cos, sin))
    params = [p for p in sb.parameters()]
    t0 = time.perf_counter()
    linear = sb.config.kind == "linear"
    if linear and st.linear_exact:
        with torch.no_grad():
            _solve_linear(sb, x, y, st.ridge)
    elif params and st.steps > 0:
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=st.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.1 + 0.45 * (1 + math.cos(math.pi * min(k, st.steps) / st.steps)))
        g = torch.Generator().manual_seed(st.seed)
        for _ in range(st.steps):
            idx = torch.randint(0, len(x), (min(st.batch_windows, len(x)),), generator=g)
            loss = _loss(sb, x[idx], y[idx], cos, sin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
        for p in params:
            p.requires_grad_(False)
    with torch.no_grad():
        after = float(_loss(sb, xh, yh, cos, sin))
    return {"loss_init": before, "loss": after, "seconds": time.perf_counter() - t0}


def _solve_linear(sb: SubBlock, x: torch.Tensor, y: torch.Tensor, ridge: float) -> None:
    """Set a linear variant's ``hidden×hidden`` weight to the ridge least-squares map from
    ``norm(x)`` to ``y`` (both ``(N, T, hidden)``), solved in float64."""
    d = x.shape[-1]
    xs = sb.norm(x).reshape(-1, d).double()
    ys = y.reshape(-1, d).double()
    xtx = xs.T @ xs
    xtx += torch.eye(d, dtype=xtx.dtype) * ridge * xtx.diagonal().mean()
    w = torch.linalg.solve(xtx, xs.T @ ys).T
    lin = sb.module.linear_attn if sb.kind == "attention" else sb.module.linear_mlp
    lin.weight.copy_(w.to(lin.weight.dtype))


def _train_layer_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: train every variant of one layer and write its files (runs in a subprocess)."""
    torch.set_num_threads(job.get("threads", 1))
    acts, out = Path(job["activations"]), Path(job["out"])
    i = job["layer"]
    layer: HeteroDecoderLayer = torch.load(acts / f"layer{i:03d}.pt", weights_only=False)
    h = torch.load(acts / f"h{i:03d}.pt")
    rope = torch.load(acts / "rope.pt")
    cos, sin = rope["cos"], rope["sin"]
    st = BLDSettings(**job["settings"])
    n_held = max(1, int(round(len(h) * st.heldout_fraction))) if len(h) > 1 else 0
    t = _targets(layer, h, cos, sin)
    att_cfgs = [AttentionConfig(**c) for c in job["attention"]]
    ffn_cfgs = [FFNConfig(**c) for c in job["ffn"]]
    att, ffn = build_layer_variants(layer, att_cfgs, ffn_cfgs, t["ffn_in"][: len(h) - n_held] if n_held else t["ffn_in"])
    metrics: dict[str, dict[str, dict[str, float]]] = {"attention": {}, "ffn": {}}
    states: dict[str, dict[str, torch.Tensor]] = {}
    for kind, variants, xin, yout in (("attention", att, t["attn_in"], t["attn_out"]), ("ffn", ffn, t["ffn_in"], t["ffn_out"])):
        if yout is None:
            continue
        split = len(xin) - n_held
        x, y = xin[:split], yout[:split]
        xh, yh = (xin[split:], yout[split:]) if n_held else (x, y)
        parent_name = attention_name(layer.block_config.attention) if kind == "attention" else ffn_name(layer.block_config.ffn)
        for name, sb in variants.items():
            settings = st if name != parent_name and sb.config.kind != "no_op" else BLDSettings(**{**st.to_dict(), "steps": 0})
            metrics[kind][name] = _train_one(sb, x, y, xh, yh, cos, sin, settings)
            states[f"{kind}/{name}"] = {k: v.detach().clone() for k, v in sb.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"layer{i:03d}.pt.tmp"
    torch.save(states, tmp)
    tmp.replace(out / f"layer{i:03d}.pt")
    info = {"layer": i, "signature": job["signature"], "metrics": metrics, "tokens": int(h.shape[0] * h.shape[1]), "heldout_windows": n_held}
    (out / f"layer{i:03d}.json").write_text(json.dumps(info, indent=1))
    return info


def _run_workers(todo: list[dict[str, Any]], workers: int, done: Callable[[dict[str, Any]], None]) -> None:
    """Train the layer jobs in ``workers`` subprocesses (``python -m llm_backends.compression.bld``), one
    thread each, layers dealt round-robin; each worker prints one JSON line per finished layer.

    Raises:
        RuntimeError: a worker failed (its stderr tail is in the message); finished layers stay on disk.
    """
    chunks = [todo[k::workers] for k in range(min(workers, len(todo)))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    lock = threading.Lock()
    errors: list[str] = []

    def work(chunk: list[dict[str, Any]]) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_backends.compression.bld"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        stderr_lines: list[str] = []
        drain = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
        drain.start()
        proc.stdin.write(json.dumps([{**j, "threads": 1} for j in chunk]))
        proc.stdin.close()
        for line in proc.stdout:
            if line.startswith("{"):
                with lock:
                    done(json.loads(line))
        proc.wait()
        drain.join(timeout=5)
        if proc.returncode:
            last = next((l.strip() for l in reversed(stderr_lines) if l.strip()), "no message")
            errors.append(f"BLD worker exited with {proc.returncode}: {last}")

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))


def check_plain_parent(model: HeteroLlamaForCausalLM) -> None:
    """Raise ``ValueError`` unless every layer of ``model`` is the same GQA + SwiGLU block
    (Puzzle derives its library from such a parent; a compressed model is not one)."""
    blocks = model.block_configs
    if any(b.attention.kind != "gqa" or b.ffn.kind != "swiglu" or b.ffn.fused_from for b in blocks) or len(set(blocks)) != 1:
        kinds = sorted({b.describe() for b in blocks})
        raise ValueError(
            "Puzzle needs a plain Llama parent (every layer the same GQA + SwiGLU block); this model has "
            + ", ".join(kinds[:4]) + (" ..." if len(kinds) > 4 else "")
            + ": give the original model, not a compressed one"
        )


def _signature(acts_meta: dict[str, Any], attention: list[AttentionConfig], ffn: list[FFNConfig], st: BLDSettings) -> str:
    payload = [acts_meta, [attention_name(c) for c in attention], [ffn_name(c) for c in ffn], st.to_dict()]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def train_library(
    model: HeteroLlamaForCausalLM,
    activations: str | os.PathLike[str],
    out: str | os.PathLike[str],
    spec: LibrarySpec = LibrarySpec(),
    settings: BLDSettings = BLDSettings(),
    workers: int = 1,
    show_progress: bool = True,
    progress: Progress | None = None,
) -> dict[int, dict[str, Any]]:
    """Blockwise local distillation of every layer's variants (see the module docstring).

    Args:
        model: the parent (its layers must all be GQA + SwiGLU).
        activations: a folder written by :func:`cache_parent_activations` for this model.
        out: the library's ``bld`` folder (created).
        spec: which variants to build.
        settings: training settings.
        workers: parallel processes (one thread each); 1 trains in this process.
        show_progress: a ``tqdm`` bar over layers on stderr.
        progress: receives one line per finished layer.

    Returns:
        ``{layer: info}`` with per-variant held-out ``loss_init`` / ``loss`` (normalised MSE) and seconds.

    Raises:
        FileNotFoundError: the activation cache is missing or incomplete.
        ValueError: the cache was made from another model, or the model is not a plain Llama
            (every layer GQA + SwiGLU of one configuration).
    """
    from tqdm import tqdm

    check_plain_parent(model)
    acts = Path(activations)
    mf = acts / "meta.json"
    if not mf.is_file():
        raise FileNotFoundError(f"no parent activations in {acts}: run cache_parent_activations first")
    meta = json.loads(mf.read_text())
    if meta.get("model") != weights_fingerprint(model) or meta.get("n_layers") != len(model.layers):
        raise ValueError(f"the activations in {acts} were cached from another model")
    attention, ffn = spec.attention_variants(model.config), spec.ffn_variants(model.config)
    sig = _signature(meta, attention, ffn, settings)
    outp = Path(out)
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for i in range(len(model.layers)):
        info_f, w_f = outp / f"layer{i:03d}.json", outp / f"layer{i:03d}.pt"
        if info_f.is_file() and w_f.is_file():
            try:
                info = json.loads(info_f.read_text())
                if info.get("signature") == sig:
                    results[i] = info
                    continue
            except (OSError, ValueError):
                pass
        todo.append(
            {
                "layer": i,
                "activations": str(acts),
                "out": str(outp),
                "settings": settings.to_dict(),
                "attention": [{"kind": c.kind, "n_kv_heads": c.n_kv_heads} for c in attention],
                "ffn": [{"kind": c.kind, "intermediate_size": c.intermediate_size} for c in ffn],
                "signature": sig,
            }
        )
    bar = tqdm(total=len(model.layers), initial=len(results), desc="BLD layers", disable=not show_progress)

    def done(info: dict[str, Any]) -> None:
        results[info["layer"]] = info
        bar.update(1)
        if progress:
            trained = ", ".join(
                f"{n} {m['loss_init']:.3f}->{m['loss']:.3f}" for k in info["metrics"].values() for n, m in k.items() if m["loss_init"] > 0 and n != "noop"
            )
            progress(f"BLD layer {info['layer']}: held-out normalised MSE {trained}")

    if workers <= 1 or len(todo) <= 1:
        threads = torch.get_num_threads()
        for job in todo:
            done(_train_layer_job({**job, "threads": threads}))
    else:
        _run_workers(todo, workers, done)
    bar.close()
    return dict(sorted(results.items()))


@dataclass
class BlockLibrary:
    """The trained variants of every layer, read from a ``bld`` folder.

    Attributes:
        variants: ``variants[layer][kind][name]`` → :class:`SubBlock` (``kind`` ``"attention"``/``"ffn"``).
        metrics: the per-layer training metrics (held-out normalised MSE before/after BLD).
    """

    variants: list[dict[str, dict[str, SubBlock]]]
    metrics: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, model: HeteroLlamaForCausalLM, folder: str | os.PathLike[str]) -> "BlockLibrary":
        """Read ``layerNNN.pt`` of every layer of ``model`` (the parent) from ``folder``.

        Raises:
            FileNotFoundError: a layer's file is missing (train it first).
            ValueError: a stored variant does not fit the parent's shapes.
        """
        folder = Path(folder)
        variants: list[dict[str, dict[str, SubBlock]]] = []
        metrics: dict[int, dict[str, Any]] = {}
        for i, layer in enumerate(model.layers):
            f = folder / f"layer{i:03d}.pt"
            if not f.is_file():
                raise FileNotFoundError(f"the block library in {folder} lacks layer {i}: run blockwise distillation first")
            states = torch.load(f, weights_only=True)
            per: dict[str, dict[str, SubBlock]] = {"attention": {}, "ffn": {}}
            for key, state in states.items():
                kind, name = key.split("/", 1)
                cfg = variant_config(kind, name)
                sb = empty_sub_block(kind, cfg, layer)
                try:
                    sb.load_state_dict(state)
                except RuntimeError as exc:
                    raise ValueError(f"layer {i} variant {key} does not fit the parent: {exc}") from None
                for p in sb.parameters():
                    p.requires_grad_(False)
                per[kind][name] = sb
            variants.append(per)
            jf = folder / f"layer{i:03d}.json"
            if jf.is_file():
                metrics[i] = json.loads(jf.read_text())
        return cls(variants, metrics)


if __name__ == "__main__":  # worker entry point of _run_workers: a JSON list of layer jobs on stdin
    for _job in json.loads(sys.stdin.read()):
        print(json.dumps(_train_layer_job(_job)), flush=True)
