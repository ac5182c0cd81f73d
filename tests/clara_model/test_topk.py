import pytest
import torch
import torch.nn.functional as F

from clara_model.topk import cosine_scores, differentiable_topk, multi_positive_infonce, soft_topk


def leaky_original_topk(scores, k, temperature):
    """The original's soft part: taken documents only get log(1e-8) added (reference §1.10)."""
    logits = scores / temperature
    hard = F.one_hot(logits.topk(k, dim=-1).indices, scores.size(-1)).float()
    taken, soft = torch.zeros_like(logits), []
    for j in range(k):
        soft.append(torch.softmax(logits + (1.0 - taken + 1e-8).log(), dim=-1))
        taken = torch.clamp(taken + hard[:, j], max=1.0)
    return torch.stack(soft, dim=1)


def test_forward_equals_hard_topk():
    scores = torch.randn(3, 7)
    weights, indices = differentiable_topk(scores, 4, temperature=0.02)
    expected = scores.topk(4, dim=-1).indices
    torch.testing.assert_close(indices, expected)
    torch.testing.assert_close(weights, F.one_hot(expected, 7).float())
    docs = torch.randn(3, 7, 5)
    selected = torch.einsum("bkn,bnd->bkd", weights, docs)
    torch.testing.assert_close(selected, docs[torch.arange(3).unsqueeze(1), expected])


def test_later_slot_gives_no_mass_and_no_gradient_to_taken_documents():
    # Cosines (0.9, 0.3, ...) at temperature 0.02: the case where the original leaks (reference §1.10).
    scores = torch.tensor([[0.9, 0.3, 0.1, -0.2]], requires_grad=True)
    weights, indices = differentiable_topk(scores, 2, temperature=0.02)
    assert indices.tolist() == [[0, 1]]

    soft = soft_topk(scores.detach(), indices, 0.02)  # [1, 2, 4]
    assert soft[0, 1, 0].item() == 0.0  # slot 1 gives no mass to document 0, which slot 0 took
    torch.testing.assert_close(soft.sum(-1), torch.ones(1, 2))
    assert leaky_original_topk(scores.detach(), 2, 0.02)[0, 1, 0] > 0.99  # the original gave it nearly all

    # Gradient of slot 1 alone: nothing reaches document 0's score.
    (grad,) = torch.autograd.grad(weights[0, 1] @ torch.tensor([5.0, 1.0, 2.0, 3.0]), scores)
    assert grad[0, 0].item() == 0.0
    assert grad[0, 1:].abs().sum() > 0


def test_soft_gradient_is_the_softmax_jacobian_over_untaken_documents():
    scores = torch.tensor([[0.5, 0.45, 0.4, 0.1, 0.0]], requires_grad=True)
    t = 0.1
    weights, _ = differentiable_topk(scores, 3, temperature=t)
    upstream = torch.randn(1, 3, 5)
    (grad,) = torch.autograd.grad((weights * upstream).sum(), scores)

    expected = torch.zeros(1, 5)
    taken = torch.zeros(1, 5, dtype=torch.bool)
    for j, chosen in enumerate([0, 1, 2]):
        s = scores.detach().clone().requires_grad_(True)
        p = torch.softmax((s / t).masked_fill(taken, float("-inf")), dim=-1)
        (g,) = torch.autograd.grad((p * upstream[:, j]).sum(), s)
        expected += g
        taken[0, chosen] = True
    torch.testing.assert_close(grad, expected)


def test_fewer_candidates_than_k_is_a_clear_error():
    with pytest.raises(ValueError, match="at least k=5 candidates"):
        differentiable_topk(torch.randn(2, 3), 5)
    masked = torch.tensor([[0.1, 0.2, float("-inf")], [0.3, 0.1, 0.2]])
    with pytest.raises(ValueError, match="2 selectable"):
        differentiable_topk(masked, 3)


def test_missing_candidates_are_never_selected():
    scores = cosine_scores(torch.randn(2, 6), torch.randn(2, 4, 6), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool())
    assert torch.isinf(scores[0, 2:]).all()
    _, indices = differentiable_topk(scores, 2)
    assert set(indices[0].tolist()) == {0, 1}


def test_cosine_scores_match_a_direct_computation():
    q, d = torch.randn(2, 8), torch.randn(2, 3, 8)
    expected = torch.stack([F.cosine_similarity(q[b].unsqueeze(0), d[b], dim=-1) for b in range(2)])
    torch.testing.assert_close(cosine_scores(q, d), expected)
    assert cosine_scores(q.bfloat16(), d.bfloat16()).dtype == torch.float32


def test_infonce_matches_the_formula():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.2], [0.3, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    positives = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]).bool()
    t = 0.1
    row0 = -torch.log((torch.exp(scores[0, [0, 2]] / t).sum()) / torch.exp(scores[0] / t).sum())
    row1 = -torch.log(torch.exp(scores[1, 1] / t) / torch.exp(scores[1] / t).sum())
    torch.testing.assert_close(multi_positive_infonce(scores, positives, t), (row0 + row1) / 2)


def test_infonce_gives_a_row_without_positives_and_missing_candidates_a_zero_finite_gradient():
    scores = torch.tensor([[0.9, 0.1, float("-inf")], [0.3, float("-inf"), float("-inf")]], requires_grad=True)
    positives = torch.tensor([[1, 0, 0], [0, 0, 0]]).bool()
    loss = multi_positive_infonce(scores, positives, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    assert scores.grad[1].abs().sum() == 0 and scores.grad[0, 2] == 0


def test_infonce_of_a_batch_without_any_positive_is_zero_and_finite():
    scores = torch.randn(3, 5, requires_grad=True)
    loss = multi_positive_infonce(scores, torch.zeros(3, 5, dtype=torch.bool), 0.02)
    loss.backward()
    assert float(loss) == 0.0 and torch.isfinite(scores.grad).all() and float(scores.grad.abs().sum()) == 0.0
