"""The answer loss for an output layer whose rows are mostly one shared vector, without 151,936 logits per token.

The CPU base (`clara_model.pretrain_base`) scores only the few thousand tokens its text ever used; every other row
of its output layer is one vector pointing away from the states, so that none of them can win. Its 128-wide
transformer costs about 1/20 of the 151,936 x 128 head per answer token, so the full-vocabulary logits would make
the head nearly all of a training step on a CPU.

When S of the V rows are one shared vector u, the full-vocabulary cross-entropy is exactly

    CE(t) = logsumexp([z_1 .. z_D, z_u + log S]) - z_t,     z = h . row,  over the D distinct rows and u,

so the loss and its gradient need D + 1 logits instead of V. `SharedRowHead.detect` finds such a layer (more than
half of the rows identical, the head frozen) and otherwise returns None: a real Qwen3 head takes the ordinary
path. The model finds it once, when it is built (a look at the rows reads values on the host, which a training
step must not do). Only the loss uses it; generation scores every row as usual.
"""

from __future__ import annotations

import torch
from torch import nn


class SharedRowHead(nn.Module):
    """The distinct rows of a frozen output layer and how many tokens share each (buffers, not saved: they are
    found again from the head on load, and follow the model's `.to()`)."""

    def __init__(self, rows: torch.Tensor, index: torch.Tensor, log_count: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("rows", rows, persistent=False)  # [D + 1, H]: the distinct rows, the shared one last
        self.register_buffer("index", index, persistent=False)  # [V]: each token's row in `rows`
        # [D + 1]: log of how many tokens have each row (0 but for the shared one)
        self.register_buffer("log_count", log_count, persistent=False)

    @classmethod
    @torch.no_grad()
    def detect(cls, head: nn.Module, *, min_share: float = 0.5) -> SharedRowHead | None:
        """Return the compact form of `head` (a bias-free Linear) when more than `min_share` of its rows equal its
        last row and it does not train; None otherwise."""
        weight = getattr(head, "weight", None)
        if weight is None or getattr(head, "bias", None) is not None or weight.requires_grad or weight.dim() != 2:
            return None
        vocab = weight.size(0)
        shared = weight[-1]
        probe = weight[:: max(1, vocab // 64)]  # a cheap look first: a real head has no repeated rows
        if (probe == shared).all(dim=1).float().mean() < min_share / 2:
            return None
        same = torch.cat([(weight[i:i + 8192] == shared).all(dim=1) for i in range(0, vocab, 8192)])  # [V]
        n_shared = int(same.sum())
        if n_shared <= min_share * vocab:
            return None
        distinct = (~same).nonzero().squeeze(1)  # [D]
        rows = torch.cat([weight[distinct], shared[None]])  # [D + 1, H]
        index = torch.full((vocab,), len(distinct), dtype=torch.long, device=weight.device)
        index[distinct] = torch.arange(len(distinct), device=weight.device)
        log_count = torch.zeros(len(distinct) + 1, dtype=torch.float32, device=weight.device)
        log_count[-1] = float(torch.tensor(float(n_shared)).log())
        return cls(rows=rows, index=index, log_count=log_count)

    def cross_entropy(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean full-vocabulary CE of `states` [T, H] predicting `targets` [T] (fp32 scalar)."""
        logits = (states @ self.rows.to(states.dtype).T).float()  # [T, D + 1]
        normaliser = torch.logsumexp(logits + self.log_count.float(), dim=-1)  # [T]
        chosen = logits.gather(1, self.index[targets].unsqueeze(1)).squeeze(1)  # [T]
        return (normaliser - chosen).mean()
