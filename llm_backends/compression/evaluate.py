"""Quality measures of a compressed model: perplexity and KL to the parent on token windows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["perplexity", "kl_to_parent"]


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, batch_size: int = 4) -> float:
    """``exp`` of the mean next-token negative log-likelihood over ``windows`` ``(N, T)``
    (each window predicts its tokens ``1..T-1``)."""
    nll, n = 0.0, 0
    for s in range(0, len(windows), batch_size):
        b = windows[s : s + batch_size]
        logits = model(b).logits[:, :-1].float()
        nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1), reduction="sum"))
        n += b[:, 1:].numel()
    return math.exp(nll / max(n, 1))


@torch.no_grad()
def kl_to_parent(model, parent, windows: torch.Tensor, batch_size: int = 4) -> float:
    """Mean ``KL(p_parent || p_model)`` of the next-token distributions over ``windows`` (nats/token)."""
    total, n = 0.0, 0
    for s in range(0, len(windows), batch_size):
        b = windows[s : s + batch_size]
        p = F.log_softmax(parent(b).logits.float(), -1)
        q = F.log_softmax(model(b).logits.float(), -1)
        total += float((p.exp() * (p - q)).sum(-1).sum())
        n += b.numel()
    return total / max(n, 1)
