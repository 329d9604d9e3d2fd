"""Test-split numbers: ELBO terms, importance-weighted NLL (Burda et al. 2016), and a posterior-collapse report.

Everything is per example in nats unless a name says bits. The IW estimate
log p(x) ~= log (1/k) sum_s p(x, z_s) / q(z_s|x), z_s ~ q(z|x), is a stochastic lower bound on log p(x)
that tightens as k grows; memory is bounded by `batch_size * k_chunk` decoder outputs, never by k.
"""
import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from vae_cli.objectives.elbo import ELBO, bits_per_dim, log_weights


def iw_log_likelihood(model, x: torch.Tensor, y: torch.Tensor | None, k: int, k_chunk: int,
                      progress=None) -> torch.Tensor:
    """x (B, C, H, W) -> (B,) log (1/k) sum_s w_s, with a running logsumexp over chunks of k_chunk samples."""
    total = torch.full((len(x),), -math.inf, device=x.device)
    for start in range(0, k, k_chunk):
        lw = log_weights(model.latent_terms(x, y, min(k_chunk, k - start)))  # (S_chunk, B)
        total = torch.logaddexp(total, torch.logsumexp(lw.double(), dim=0).to(total.dtype))
        if progress is not None:
            progress.update(1)
    return total - math.log(k)


@dataclass
class ExampleScores:
    """Per-example numbers over a split, in nats: (N,) each."""

    elbo: torch.Tensor
    distortion: torch.Tensor
    rate: torch.Tensor
    log_px: torch.Tensor  # the IW estimate of log p(x); the IW-NLL is its negative


@torch.no_grad()
def score_split(model, x: torch.Tensor, y: torch.Tensor, k: int, batch_size: int, k_chunk: int,
                show_progress: bool = True) -> tuple[ExampleScores, torch.Tensor | None]:
    """ELBO terms (beta = 1, closed-form KL where it exists) and IW log p(x) for every example of a prepared
    split x (N, C, H, W); also returns the split-mean KL per latent dim (D,) or None."""
    elbo = ELBO()
    parts, kl_sum = [], None
    n_chunks = math.ceil(k / k_chunk)
    with tqdm(total=math.ceil(len(x) / batch_size) * n_chunks, desc=f"IW-NLL k={k}", unit="chunk",
              disable=not show_progress, mininterval=2.0) as bar:
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            terms = elbo(model, xb, 0, yb)
            log_px = iw_log_likelihood(model, xb, yb, k, k_chunk, bar)
            parts.append(torch.stack([terms["elbo"], terms["distortion"], terms["rate"], log_px]))
            if "kl_per_dim" in terms:
                kl_sum = terms["kl_per_dim"] * len(xb) + (0 if kl_sum is None else kl_sum)
    scores = ExampleScores(*torch.cat(parts, dim=1).float().cpu())
    return scores, None if kl_sum is None else (kl_sum / len(x)).float().cpu()


def split_metrics(scores: ExampleScores, num_dims: int, discrete_offset: float) -> dict[str, float]:
    """Split means in nats and bits/dim; `iw_nll_stderr` is the standard error of the mean over examples."""
    nll = -scores.log_px
    out = {name: float(getattr(scores, name).mean()) for name in ("elbo", "distortion", "rate")}
    out["bits_per_dim"] = float(bits_per_dim(-scores.elbo.mean(), num_dims, discrete_offset))
    out["iw_nll"] = float(nll.mean())
    out["iw_nll_stderr"] = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    out["iw_nll_bits_per_dim"] = float(bits_per_dim(nll.mean(), num_dims, discrete_offset))
    out["iw_gap"] = -out["elbo"] - out["iw_nll"]  # >= 0 in expectation: how loose the ELBO is, nats
    return out

