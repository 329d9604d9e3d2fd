"""Test-split numbers: ELBO terms, importance-weighted NLL (Burda et al. 2016), and a posterior-collapse report.

Everything is per example in nats unless a name says bits. The IW estimate
log p(x) ~= log (1/k) sum_s p(x, z_s) / q(z_s|x), z_s ~ q(z|x), is a stochastic lower bound on log p(x)
that tightens as k grows; memory is bounded by `batch_size * k_chunk` decoder outputs, never by k.
"""
import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from vae_cli.metrics import active_units, posterior_mean
from vae_cli.objectives import Objective, bits_per_dim, log_weights


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
    elbo = Objective(beta=1.0)
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


def summary(scores: ExampleScores, num_dims: int, discrete_offset: float) -> dict[str, float]:
    """Split means in nats and bits/dim; `iw_nll_stderr` is the standard error of the mean over examples."""
    nll = -scores.log_px
    out = {name: float(getattr(scores, name).mean()) for name in ("elbo", "distortion", "rate")}
    out["bits_per_dim"] = float(bits_per_dim(-scores.elbo.mean(), num_dims, discrete_offset))
    out["iw_nll"] = float(nll.mean())
    out["iw_nll_stderr"] = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    out["iw_nll_bits_per_dim"] = float(bits_per_dim(nll.mean(), num_dims, discrete_offset))
    out["iw_gap"] = -out["elbo"] - out["iw_nll"]  # >= 0 in expectation: how loose the ELBO is, nats
    return out


def _chunks(model, x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        yield model.encode(xb, yb)  # q(z|x) for one batch, batch shape (b,)


@torch.no_grad()
def mutual_information(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float | None:
    """I_q(x; z) over the split, estimated as in He et al. 2019 (lagging inference networks):

    I = E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z))        (Hoffman & Johnson 2016)
      = E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)],       the log p(z) terms cancel,
    with one z_i ~ q(z|x_i) per example and the aggregate posterior q(z) = (1/N) sum_j q(z|x_j) over the
    whole split (He et al. use a mini-batch). In nats; at most log N. None if q cannot score foreign z.
    """
    qs = list(_chunks(model, x, y, batch_size))
    try:
        z = torch.cat([q.sample() for q in qs])  # (N, D)
        log_q_own = torch.cat([q.log_prob(zq) for q, zq in zip(qs, z.split(batch_size))])  # (N,)
        log_agg = torch.cat([_log_aggregate(qs, zc) for zc in z.split(64)])  # (N,)
    except (NotImplementedError, RuntimeError, ValueError):
        return None
    return float((log_q_own - log_agg).mean())


def _log_aggregate(qs: list, z: torch.Tensor) -> torch.Tensor:
    """z (M, D) -> (M,) log (1/N) sum_j q(z_m | x_j), with q(z|x_j) given batch by batch."""
    log_q = torch.cat([q.log_prob(z.unsqueeze(1)) for q in qs], dim=1)  # (M, N)
    return torch.logsumexp(log_q, dim=1) - math.log(log_q.shape[1])


@torch.no_grad()
def collapse_report(model, x: torch.Tensor, y: torch.Tensor, kl_per_dim: torch.Tensor | None,
                    batch_size: int, kl_threshold: float = 0.01) -> dict:
    """KL per dim sorted (nats), active units (Var_x E_q[z_j] > 0.01), I_q(x;z), and a one-line verdict."""
    means = [posterior_mean(model, xb, yb) for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    au_var = None if means[0] is None else torch.cat(means).float().var(dim=0).cpu()  # (D,)
    report = {"kl_per_dim": None if kl_per_dim is None else kl_per_dim.tolist(),
              "kl_per_dim_sorted": None, "active_units": None if au_var is None else active_units(torch.cat(means)),
              "mutual_information": mutual_information(model, x, y, batch_size), "kl_threshold": kl_threshold,
              "mutual_information_max": math.log(len(x))}  # the estimator cannot exceed log N
    if kl_per_dim is not None:
        order = torch.argsort(kl_per_dim, descending=True)
        report["kl_per_dim_sorted"] = [[int(j), float(kl_per_dim[j])] for j in order]
    report["collapsed_dims"] = collapsed_dims(kl_per_dim, au_var, kl_threshold)
    report["verdict"] = verdict(report["collapsed_dims"], kl_per_dim, au_var, report["mutual_information"])
    return report


def collapsed_dims(kl: torch.Tensor | None, au_var: torch.Tensor | None, kl_threshold: float) -> list[int] | None:
    """Dims whose split-mean KL is under `kl_threshold` nats (or, without a per-dim KL, inactive units)."""
    if kl is not None:
        return [int(j) for j in torch.nonzero(kl < kl_threshold).flatten()]
    if au_var is not None:
        return [int(j) for j in torch.nonzero(au_var <= 0.01).flatten()]
    return None


def verdict(collapsed: list[int] | None, kl, au_var, mi: float | None) -> str:
    if collapsed is None:
        return "collapse: not applicable (the posterior has neither a per-dim KL nor a mean)"
    d = len(kl) if kl is not None else len(au_var)
    by = "KL < threshold" if kl is not None else "Var_x E_q[z_j] <= 0.01"
    mi_text = "n/a" if mi is None else f"{mi:.2f}"
    if len(collapsed) == d:
        return f"posterior collapse: all {d} latent dims collapsed ({by}); I(x;z) = {mi_text} nats"
    if not collapsed:
        return f"no collapsed dims: all {d} latent dims are used; I(x;z) = {mi_text} nats"
    return (f"partial collapse: {len(collapsed)}/{d} dims collapsed ({by}): {collapsed}; "
            f"{d - len(collapsed)} used; I(x;z) = {mi_text} nats")
