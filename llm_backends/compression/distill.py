"""Short global distillation of a compressed model against its parent (CPU-sized).

Loss per batch (Puzzle, Bercovich et al., 2024, §5 "global knowledge distillation":
logit KL plus hidden-state terms):

    L = KL(p_parent || p_student)  +  λ · mean_l (1 − cos(h_student[l], h_parent[π(l)]))

where ``π(l)`` is the parent layer whose output student layer ``l`` stands in for (the last
layer of a fused group, see :func:`~llm_backends.compression.fusion.parent_layer_map`), and
cosines are averaged over tokens. The parent runs in ``no_grad`` on the same windows.
The decoder layers and the final norm train (AdamW); the embeddings stay frozen (they are
tied to the output head in SmolLM2 and hold a fifth of the weights). A checkpoint
(student weights, optimizer, step) is written every ``save_every`` steps and at the end;
a rerun with the same checkpoint path resumes from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from llm_backends.compression.fusion import parent_layer_map
from llm_backends.compression.model import HeteroLlamaForCausalLM

__all__ = ["DistillResult", "distill"]


@dataclass
class DistillResult:
    """What a distillation run did.

    Attributes:
        steps: optimizer steps done in total (including resumed ones).
        resumed_from: the step a checkpoint resumed from (0: fresh start).
        losses: loss of each step run now (nats + λ·cosine distance).
        seconds: wall-clock seconds of this run.
    """

    steps: int
    resumed_from: int
    losses: list[float]
    seconds: float


def _signature(student: HeteroLlamaForCausalLM) -> str:
    return "|".join(b.describe() for b in student.block_configs)


def distill(
    student: HeteroLlamaForCausalLM,
    parent: HeteroLlamaForCausalLM,
    windows: torch.Tensor,
    steps: int,
    batch_size: int = 2,
    lr: float = 5e-5,
    hidden_weight: float = 1.0,
    checkpoint: str | os.PathLike[str] | None = None,
    save_every: int = 10,
    show_progress: bool = True,
    seed: int = 0,
) -> DistillResult:
    """Distil ``student`` towards ``parent`` in place on token windows.

    Args:
        student: the compressed model (trained in place, left in eval mode).
        parent: the teacher (unchanged).
        windows: ``(N, T)`` long token windows (the self-distillation text).
        steps: total optimizer steps wanted (a resumed run does only the remaining ones).
        batch_size: windows per step.
        lr: AdamW learning rate (cosine decay to 10% over ``steps``).
        hidden_weight: ``λ`` of the hidden-state cosine term.
        checkpoint: path of the resumable checkpoint (``None``: no checkpoint).
        save_every: steps between checkpoint writes.
        show_progress: tqdm bar on stderr.
        seed: order of the windows.

    Returns:
        :class:`DistillResult`.

    Raises:
        ValueError: ``steps < 0``, no windows, or a checkpoint made for a different architecture.
    """
    import time

    from tqdm import tqdm

    if steps < 0 or len(windows) == 0 or batch_size < 1:
        raise ValueError("distillation needs steps >= 0, batch_size >= 1 and at least one window")
    t0 = time.perf_counter()
    pmap = [max(p) for p in parent_layer_map(student)]
    params = [p for n, p in student.named_parameters() if not n.startswith("model.embed_tokens") and not n.startswith("lm_head")]
    for n, p in student.named_parameters():
        p.requires_grad_(not (n.startswith("model.embed_tokens") or n.startswith("lm_head")))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * min(s, steps) / max(steps, 1))).item())
    )
    start = 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("signature") != _signature(student):
            raise ValueError(f"checkpoint {ckpt} was made for another architecture; delete it to start afresh")
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])

    def save(step: int) -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(ckpt.suffix + ".tmp")
        torch.save(
            {"student": student.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "signature": _signature(student)},
            tmp,
        )
        tmp.replace(ckpt)

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(windows), generator=g)
    losses: list[float] = []
    student.train()
    bar = tqdm(range(start, steps), desc="distill", disable=not show_progress, initial=start, total=steps)
    for step in bar:
        idx = torch.tensor([order[(step * batch_size + k) % len(order)] for k in range(batch_size)])
        batch = windows[idx]
        with torch.no_grad():
            t_out = parent(batch, output_hidden_states=True)
        s_out = student(batch, output_hidden_states=True)
        logp_t = F.log_softmax(t_out.logits.float(), -1)
        logp_s = F.log_softmax(s_out.logits.float(), -1)
        kl = (logp_t.exp() * (logp_t - logp_s)).sum(-1).mean()
        cos = torch.stack(
            [1 - F.cosine_similarity(s_out.hidden_states[l + 1].float(), t_out.hidden_states[pmap[l] + 1].float(), dim=-1).mean() for l in range(len(pmap))]
        ).mean()
        loss = kl + hidden_weight * cos
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(kl=f"{float(kl.detach()):.3f}", cos=f"{float(cos.detach()):.4f}")
        if (step + 1) % save_every == 0:
            save(step + 1)
    bar.close()
    if steps > start:
        save(steps)
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return DistillResult(max(steps, start), start, losses, time.perf_counter() - t0)
