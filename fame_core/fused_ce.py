"""Full-softmax cross-entropy of a linear layer, in chunks of rows: memory O(rows x n), not O(M x n).

    loss = mean_t ( logsumexp_j (u_t . E_j) - u_t . E_{target_t} )     = F.cross_entropy(u @ E.T, target)

Training's full softmax (`training.loss_on_batch`) scores every target position u_t (M of them,
10,536 in Beauty's largest batch) against every item E_j (n = 12,101): one M x n float32 matrix
is 486 MiB, and autograd's cross-entropy keeps three of them (logits, log-softmax, its gradient).
`linear_cross_entropy` never builds that matrix. Its forward walks the rows in chunks: each
chunk's logits, its target logits and logsumexp (the loss), then in the same buffer softmax -
one-hot, from which it writes the gradient wrt the chunk's u rows and adds the chunk's share of
the gradient wrt E. The loss is a scalar, so its backward only scales those two small gradients
(M x d and n x d) by the incoming gradient: no recomputation, the same three (M x d) . (d x n)
products as autograd's. Peak extra memory is one chunk's logits, `LOGITS_BUDGET` bytes by default,
whatever M is. (Recomputing each chunk's softmax in the backward instead, as a first version
did, costs a fourth product: on Beauty's largest batch, forward + backward on one thread took
4.8 s that way, 2.6 s this way, 4.2 s unchunked; medians of 4 interleaved runs at load 5.5.)
Gradients are computed only where grad mode is on and an input requires them; the function
cannot be differentiated twice.

Same value and gradients as F.cross_entropy(u @ E.T, target) (mean over targets) up to float
summation order (tests/test_fused_ce.py). Under torch.autocast the products run in the autocast
dtype, as `u @ E.T` would, and the softmax in float32.
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
    def forward(ctx, u, E, target, rows, mm_dtype, need_u, need_E):
        M = u.shape[0]
        uc, Ec = (u, E) if mm_dtype is None else (u.to(mm_dtype), E.to(mm_dtype))
        acc = torch.promote_types(uc.dtype, torch.float32)   # softmax in float32 (float64 for float64 input)
        total = torch.zeros((), dtype=acc, device=u.device)
        grad_u = torch.empty_like(u) if need_u else None
        grad_E = torch.zeros(E.shape, dtype=torch.promote_types(E.dtype, acc), device=E.device) if need_E else None
        for s in range(0, M, rows):
            uc_s, t_s = uc[s:s + rows], target[s:s + rows]
            z = (uc_s @ Ec.T).to(acc)                        # the chunk's logits, (r, n)
            total -= z.gather(1, t_s[:, None]).sum()
            top = z.amax(1, keepdim=True)
            z.sub_(top).exp_()                                # exp(logit - max), in place
            sumexp = z.sum(1, keepdim=True)
            total += (top + sumexp.log()).sum()               # logsumexp of each row
            if need_u or need_E:                              # d mean loss / d logits = (softmax - onehot) / M
                z.mul_(1.0 / (sumexp * M))
                z[torch.arange(z.shape[0], device=z.device), t_s] -= 1.0 / M
                g = z.to(uc.dtype)                            # the products in the forward's dtype
                if need_u:
                    grad_u[s:s + rows] = g @ Ec
                if need_E:
                    grad_E.addmm_(g.T.to(grad_E.dtype), uc_s.to(grad_E.dtype))
                del g
            del z
        ctx.save_for_backward(grad_u if need_u else None, grad_E.to(E.dtype) if need_E else None)
        return total / M

    @staticmethod
    def backward(ctx, grad_out):
        grad_u, grad_E = ctx.saved_tensors              # the loss is a scalar: its gradients scale with grad_out
        return (None if grad_u is None else grad_u * grad_out.to(grad_u.dtype),
                None if grad_E is None else grad_E * grad_out.to(grad_E.dtype), None, None, None, None, None)


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
    grad = torch.is_grad_enabled()
    with torch.autocast(u.device.type, enabled=False):   # the products' dtype is chosen above
        return _LinearCrossEntropy.apply(u, E, target.long(), rows, mm_dtype, grad and u.requires_grad,
                                         grad and E.requires_grad)


__all__ = ["LOGITS_BUDGET", "chunk_rows", "linear_cross_entropy"]
