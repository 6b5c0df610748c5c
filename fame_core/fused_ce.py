"""Full-softmax cross-entropy of a linear layer, in chunks of rows: memory O(rows x n), not O(M x n).

    loss = mean_t ( logsumexp_j (u_t . E_j) - u_t . E_{target_t} )     = F.cross_entropy(u @ E.T, target)

Training's full softmax (`training.loss_on_batch`) scores every target position u_t (M of them,
10,536 in Beauty's largest batch) against every item E_j (n = 12,101): one M x n float32 matrix
is 486 MiB, and autograd's cross-entropy keeps three of them (logits, log-softmax, its gradient).
`linear_cross_entropy` never builds that matrix. Its forward walks the rows in chunks, computing
each chunk's logits, logsumexp and target logit and keeping only the M logsumexps; its backward
recomputes each chunk's logits, turns them into softmax - one-hot in place, and from that chunk
writes the gradient wrt its u rows and adds its share of the gradient wrt E. Peak extra memory is
one chunk's logits (and logsumexp's temporary), `LOGITS_BUDGET` bytes by default, whatever M is;
the price is one more (M x d) . (d x n) product than autograd's (the recomputation).

Same value and gradients as F.cross_entropy(u @ E.T, target) (mean over targets) up to float
summation order (tests/test_fused_ce.py). Under torch.autocast the products run in the autocast
dtype, as `u @ E.T` would, and the softmax in float32; the backward recomputes with the same dtype.
"""

from __future__ import annotations

import torch

LOGITS_BUDGET = 64 * 2**20   # bytes of float32 logits per chunk: 1,386 rows at Beauty's 12,101 items


def chunk_rows(n_items: int, budget: int = LOGITS_BUDGET) -> int:
    """Rows per chunk so that one chunk's float32 logits take at most `budget` bytes (at least 1 row)."""
    return max(1, budget // (4 * max(1, n_items)))


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, E, target, rows, mm_dtype):
        M = u.shape[0]
        uc, Ec = (u, E) if mm_dtype is None else (u.to(mm_dtype), E.to(mm_dtype))
        acc = torch.promote_types(uc.dtype, torch.float32)   # softmax in float32 (float64 for float64 input)
        lse = torch.empty(M, dtype=acc, device=u.device)
        picked = torch.empty(M, dtype=acc, device=u.device)
        for s in range(0, M, rows):
            logits = (uc[s:s + rows] @ Ec.T).to(acc)
            lse[s:s + rows] = torch.logsumexp(logits, 1)
            picked[s:s + rows] = logits.gather(1, target[s:s + rows, None])[:, 0]
            del logits
        ctx.save_for_backward(u, E, target, lse)
        ctx.rows, ctx.mm_dtype = rows, mm_dtype
        return (lse - picked).sum() / M

    @staticmethod
    def backward(ctx, grad_out):
        u, E, target, lse = ctx.saved_tensors
        rows, mm_dtype, acc = ctx.rows, ctx.mm_dtype, lse.dtype
        M = u.shape[0]
        need_u, need_E = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        uc, Ec = (u, E) if mm_dtype is None else (u.to(mm_dtype), E.to(mm_dtype))
        grad_u = torch.empty_like(u) if need_u else None
        grad_E = torch.zeros(E.shape, dtype=torch.promote_types(E.dtype, acc), device=E.device) if need_E else None
        scale = grad_out.to(acc) / max(M, 1)
        for s in range(0, M, rows):
            uc_s = uc[s:s + rows]
            g = (uc_s @ Ec.T).to(acc)                         # the chunk's logits again ...
            g.sub_(lse[s:s + rows, None]).exp_()              # ... their softmax, in place
            g[torch.arange(g.shape[0], device=g.device), target[s:s + rows]] -= 1.0
            g.mul_(scale)                                     # d loss / d logits of the chunk
            g = g.to(uc.dtype)                                # the products in the forward's dtype
            if need_u:
                grad_u[s:s + rows] = g @ Ec
            if need_E:
                grad_E.addmm_(g.T.to(grad_E.dtype), uc_s.to(grad_E.dtype))
            del g
        if grad_E is not None:
            grad_E = grad_E.to(E.dtype)
        return grad_u, grad_E, None, None, None


def linear_cross_entropy(u: torch.Tensor, E: torch.Tensor, target: torch.Tensor, rows: int | None = None,
                         budget: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of the classes target (M,) under logits u @ E.T, u: (M, d), E: (n, d),
    computed `rows` rows at a time (default: as many as `budget` bytes of float32 logits hold,
    `LOGITS_BUDGET` by default).
    Equals F.cross_entropy(u @ E.T, target), gradients wrt u and E included."""
    if u.dim() != 2 or E.dim() != 2 or u.shape[1] != E.shape[1] or target.shape != (u.shape[0],):
        raise ValueError(f"linear_cross_entropy: u {tuple(u.shape)}, E {tuple(E.shape)}, target "
                         f"{tuple(target.shape)}; expected (M, d), (n, d) and (M,)")
    if rows is None:
        rows = chunk_rows(E.shape[0], LOGITS_BUDGET if budget is None else budget)
    rows = int(rows)
    if rows < 1:
        raise ValueError(f"rows must be at least 1, not {rows}")
    mm_dtype = _autocast_dtype(u.device.type)
    with torch.autocast(u.device.type, enabled=False):   # the dtype is chosen above, once, for both passes
        return _LinearCrossEntropy.apply(u, E, target.long(), rows, mm_dtype)


__all__ = ["LOGITS_BUDGET", "chunk_rows", "linear_cross_entropy"]
