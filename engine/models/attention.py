"""Transformer building blocks shared by OmniSat and AnySat.

Attention goes through ``torch.nn.functional.scaled_dot_product_attention`` except
over very short key sequences (AnySat's spatial encoder on 10 m series: 2 tokens per
patch), where the matmul-softmax formula is faster on CPU. On the AVX-512 EPYC with
2 threads (load 4), SDPA took 8.8 ms against 18.8 ms explicit for 36 x 12 heads x 26 keys
with a bias, 8.0 / 11.0 ms for 109 keys, but 3.7 / 1.9 ms for 72 x 12 x 2 keys: one fused
kernel instead of the copies, bmm, scale, bias, softmax and bmm of the explicit formula
(each a parallel region: costly on loaded cores). ``explicit_attention()`` switches every
call to that formula: the benchmarks' naive baseline and the tests' cross-check.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from engine.models.kernels import Linear, Switch, linear, linear_rows

_explicit = Switch(False)
# Up to this many keys the explicit formula is the faster one (measured at 2 keys; SDPA won at 26).
SHORT_KEYS = 8


def explicit_attention() -> contextlib.AbstractContextManager:
    """Within this block, ``attend`` computes softmax(q k^T / sqrt(d) + bias) v by hand."""
    return _explicit.set(True)


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """Multi-head attention on (B, H, N, d) tensors with an optional additive bias (B|1, H|1, Nq, Nk)."""
    if bias is not None:
        bias = bias.to(q.dtype)  # autocast may leave the bias in another dtype than q
    if _explicit.value or k.shape[-2] <= SHORT_KEYS:
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        if bias is not None:
            scores = scores + bias
        weights = torch.softmax(scores, dim=-1)
        if dropout_p:
            weights = F.dropout(weights, dropout_p)
        return weights @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual branch per sample."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


class ContextualRelativePosition(nn.Module):
    """Relative position on keys, contextual mode (iRPE): bias[i, j] = q_i . r[bucket(i, j)].

    One table of ``n_buckets`` vectors of the head size, shared by all heads.
    ``first_head``: AnySat's release computes the bias from the first head's queries
    only and adds it to every head; the bias is then (B, 1, Nq, Nk).
    """

    def __init__(self, head_dim: int, n_buckets: int, first_head: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(head_dim, n_buckets))
        self.first_head = first_head

    def forward(self, q: Tensor, buckets: Tensor | None) -> Tensor:
        """q (B, H, Nq, d), buckets long (Nq, Nk) or (B, Nq, Nk) -> bias (B, H, Nq, Nk)."""
        if buckets is None:
            raise ValueError("this attention has a relative position table: pass rel_buckets")
        if self.first_head:
            q = q[:, :1]
        table = q @ self.weight.to(q.dtype)
        if buckets.dim() == 3:  # one bucket map per sample (B, Nq, Nk)
            buckets = buckets[:, None]
        index = buckets.expand(*table.shape[:2], *buckets.shape[-2:])
        return torch.gather(table, -1, index)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``mlp(x)``, plus ``residual`` added inside the last matmul (at inference only: no dropout then)."""
        hidden = self.dropout(linear(self.fc1, x, "gelu"))
        if residual is not None:
            return linear(self.fc2, hidden, residual=residual)
        return self.dropout(self.fc2(hidden))


class _Attention(nn.Module):
    """What self- and cross-attention share: heads, the optional iRPE table, the output projection."""

    def __init__(
        self, dim: int, heads: int, attn_drop: float, proj_drop: float, rel_pos_buckets: int, rel_pos_first_head: bool
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding size {dim} is not divisible by {heads} heads")
        self.heads, self.attn_drop = heads, attn_drop
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos = (
            ContextualRelativePosition(dim // heads, rel_pos_buckets, rel_pos_first_head) if rel_pos_buckets else None
        )

    def _attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_bias: Tensor | None,
        rel_buckets: Tensor | None,
        rel_queries: Tensor,
        residual: Tensor | None = None,
    ) -> Tensor:
        """Attention of (B, H, N, d) heads plus the relative-position bias of ``rel_queries``, projected;
        ``residual`` (inference only) is added inside the projection's matmul."""
        bias = attn_bias
        if self.rel_pos is not None:
            position = self.rel_pos(rel_queries, rel_buckets)
            bias = position if bias is None else bias + position
        out = rearrange(attend(q, k, v, bias, self.attn_drop if self.training else 0.0), "b h n d -> b n (h d)")
        if residual is not None:
            return linear(self.proj, out, residual=residual)
        return self.proj_drop(self.proj(out))


class SelfAttention(_Attention):
    def __init__(
        self,
        dim: int,
        heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rel_pos_buckets: int = 0,
        rel_pos_first_head: bool = False,
    ):
        super().__init__(dim, heads, attn_drop, proj_drop, rel_pos_buckets, rel_pos_first_head)
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)

    def forward(
        self,
        x: Tensor,
        attn_bias: Tensor | None = None,
        rel_buckets: Tensor | None = None,
        residual: Tensor | None = None,
    ) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        # iRPE applies the table to the already scaled queries in self-attention.
        return self._attend(q, k, v, attn_bias, rel_buckets, q * q.shape[-1] ** -0.5, residual)

    def forward_first(self, x: Tensor, rel_buckets: Tensor | None = None) -> Tensor:
        """The output of the first token only (B, 1, D): its query against every key; the other
        tokens' queries are never computed."""
        d = x.shape[-1]
        q = rearrange(linear_rows(self.qkv, x[:, :1], 0, d), "b n (h e) -> b h n e", h=self.heads)
        k, v = rearrange(linear_rows(self.qkv, x, d, 3 * d), "b n (two h e) -> two b h n e", two=2, h=self.heads)
        first = None if rel_buckets is None else rel_buckets[..., :1, :]
        return self._attend(q, k, v, None, first, q * q.shape[-1] ** -0.5)


class Block(nn.Module):
    """Pre-norm residual transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    attention = SelfAttention

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        rel_pos_buckets: int = 0,
        rel_pos_first_head: bool = False,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = self.attention(dim, heads, qkv_bias, attn_drop, dropout, rel_pos_buckets, rel_pos_first_head)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self.drop_path = drop_path

    def forward(self, x: Tensor, attn_bias: Tensor | None = None, rel_buckets: Tensor | None = None) -> Tensor:
        if not self.training:  # the residual adds inside the output matmuls (no dropout, no drop path)
            x = self.attn(self.norm1(x), attn_bias, rel_buckets, residual=x)
            return self.mlp(self.norm2(x), residual=x)
        x = x + drop_path(self.attn(self.norm1(x), attn_bias, rel_buckets), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def forward_first(self, x: Tensor, rel_buckets: Tensor | None = None) -> Tensor:
        """``forward(x)[:, :1]`` at inference, without the other tokens' attention output and MLP
        (a last block whose class token alone is read)."""
        first = x[:, :1] + self.attn.forward_first(self.norm1(x), rel_buckets)
        return first + self.mlp(self.norm2(first))


class CrossAttention(_Attention):
    """Given queries (not projected) attend to projected keys and values of the tokens."""

    def __init__(
        self,
        dim: int,
        heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rel_pos_buckets: int = 0,
        rel_pos_first_head: bool = False,
    ):
        super().__init__(dim, heads, attn_drop, proj_drop, rel_pos_buckets, rel_pos_first_head)
        self.wk = Linear(dim, dim, bias=qkv_bias)
        self.wv = Linear(dim, dim, bias=qkv_bias)

    def forward(
        self, queries: Tensor, x: Tensor, attn_bias: Tensor | None = None, rel_buckets: Tensor | None = None
    ) -> Tensor:
        q = rearrange(queries, "b n (h d) -> b h n d", h=self.heads)
        k = rearrange(self.wk(x), "b n (h d) -> b h n d", h=self.heads)
        v = rearrange(self.wv(x), "b n (h d) -> b h n d", h=self.heads)
        return self._attend(q, k, v, attn_bias, rel_buckets, q)


class CrossBlock(Block):
    """OmniSat's fusion block: out = cross_attn(queries, norm(x)); out + mlp(norm(out)).

    No residual around the cross-attention: the queries are learned constants, the
    output carries only what they gathered from the tokens.
    """

    attention = CrossAttention

    def forward(
        self, queries: Tensor, x: Tensor, attn_bias: Tensor | None = None, rel_buckets: Tensor | None = None
    ) -> Tensor:
        # No stochastic depth on the attention branch: without a residual, dropping it
        # would erase the sample's whole output.
        out = self.attn(queries, self.norm1(x), attn_bias, rel_buckets)
        if not self.training:
            return self.mlp(self.norm2(out), residual=out)
        return out + drop_path(self.mlp(self.norm2(out)), self.drop_path, self.training)
