"""The shared-row head: the same loss and gradient as the full-vocabulary cross-entropy, found only where it applies."""

import torch
import torch.nn.functional as F
from torch import nn

from clara_model.head import SharedRowHead


def shared_head(vocab: int = 5000, hidden: int = 16, distinct: int = 300, seed: int = 0) -> nn.Linear:
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(hidden, vocab, bias=False)
    weight = torch.randn(vocab, hidden, generator=generator)
    rows = torch.randperm(vocab - 1, generator=generator)[:distinct]  # the seen tokens, anywhere but the last row
    shared = torch.randn(hidden, generator=generator)
    keep = torch.zeros(vocab, dtype=torch.bool)
    keep[rows] = True
    weight[~keep] = shared
    head.weight.data.copy_(weight)
    head.requires_grad_(False)
    return head


def test_the_compact_loss_and_gradient_equal_the_full_vocabulary_ones():
    head = shared_head()
    compact = SharedRowHead.detect(head)
    assert compact is not None and compact.rows.shape == (301, 16)
    assert int(compact.log_count[-1].exp().round()) == 5000 - 300
    generator = torch.Generator().manual_seed(1)
    states = torch.randn(64, 16, generator=generator, requires_grad=True)
    seen = (head.weight != head.weight[-1]).any(dim=1).nonzero().squeeze(1)
    targets = torch.cat([seen[torch.randint(len(seen), (48,), generator=generator)],
                         torch.randint(5000, (16,), generator=generator)])  # seen tokens and unseen ones
    full = F.cross_entropy(head(states), targets)
    (full_grad,) = torch.autograd.grad(full, states)
    fast = compact.cross_entropy(states, targets)
    (fast_grad,) = torch.autograd.grad(fast, states)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, full_grad, rtol=1e-4, atol=1e-6)


def test_a_head_without_shared_rows_a_trainable_head_and_a_biased_head_take_the_ordinary_path():
    random_head = nn.Linear(16, 5000, bias=False).requires_grad_(False)
    assert SharedRowHead.detect(random_head) is None
    trainable = shared_head()
    trainable.requires_grad_(True)
    assert SharedRowHead.detect(trainable) is None
    biased = nn.Linear(16, 5000, bias=True).requires_grad_(False)
    biased.weight.data.copy_(shared_head().weight)
    assert SharedRowHead.detect(biased) is None
    few = shared_head(distinct=4000)  # a fifth of the rows shared: not worth it, and not what the CPU base makes
    assert SharedRowHead.detect(few) is None
