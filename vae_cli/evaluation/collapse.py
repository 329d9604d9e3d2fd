"""Posterior-collapse diagnostics: active units, I_q(x; z), KL per dim sorted, and a one-line verdict."""
import math

import torch

AU_THRESHOLD = 0.01  # an active unit: Var_x E_q[z_j | x] above this (Burda et al. 2016)


def posterior_mean(model, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor | None:
    """The family's `posterior_mean` (every layer, (B, sum_l D_l); categorical: each (latent, class) pair),
    or None where it declares none (flows, VQ-VAE): active units do not apply there."""
    return model.posterior_mean(x, y) if model.has_posterior_mean else None


def active_units(means: torch.Tensor, threshold: float = AU_THRESHOLD) -> int:
    """means (N, D): posterior means over a split -> number of dims whose variance across x exceeds threshold."""
    return int((means.float().var(dim=0) > threshold).sum())


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
    if not model.has_density:
        return None
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
    """KL per dim sorted (nats), active units (Var_x E_q[z_j] > 0.01; None for one example, where a variance over
    x is undefined), I_q(x;z), and a one-line verdict. Two criteria, two names: `active_units` counts dims whose
    posterior mean varies across x; `collapsed_dims` lists dims whose mean KL is under `kl_threshold` nats."""
    means = [posterior_mean(model, xb, yb) for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    au_var = None if means[0] is None or len(x) < 2 else torch.cat(means).float().var(dim=0).cpu()  # (D,)
    report = {"kl_per_dim": None if kl_per_dim is None else kl_per_dim.tolist(),
              "kl_per_dim_sorted": None, "active_units": None if au_var is None else active_units(torch.cat(means)),
              "active_units_threshold": AU_THRESHOLD, "num_dims": num_dims(kl_per_dim, au_var),
              "mutual_information": mutual_information(model, x, y, batch_size), "kl_threshold": kl_threshold,
              "mutual_information_max": math.log(len(x))}  # the estimator cannot exceed log N
    if kl_per_dim is not None:
        order = torch.argsort(kl_per_dim, descending=True)
        report["kl_per_dim_sorted"] = [[int(j), float(kl_per_dim[j])] for j in order]
    report["collapsed_dims"] = collapsed_dims(kl_per_dim, au_var, kl_threshold)
    report["verdict"] = verdict(report["collapsed_dims"], kl_per_dim, au_var, kl_threshold)
    report["per_layer"] = per_layer(model, kl_per_dim, au_var, kl_threshold)
    return report


def per_layer(model, kl_per_dim: torch.Tensor | None, au_var: torch.Tensor | None,
              kl_threshold: float = 0.01) -> list[dict] | None:
    """Hierarchies: per stochastic layer (bottom first) its dims, KL (nats), active units and collapsed dims
    (indices within the layer); else None."""
    dims = model.layer_dims
    if len(dims) < 2:
        return None
    kls = model.split_layers(kl_per_dim) if kl_per_dim is not None else [None] * len(dims)
    aus = model.split_layers(au_var) if au_var is not None else [None] * len(dims)
    return [{"layer": l + 1, "dims": d, "kl": None if kl is None else float(kl.sum()),
             "kl_per_dim": None if kl is None else kl.tolist(),
             "active_units": None if au is None else int((au > AU_THRESHOLD).sum()),
             "collapsed_dims": collapsed_dims(kl, au, kl_threshold)}
            for l, (d, kl, au) in enumerate(zip(dims, kls, aus))]


def num_dims(kl: torch.Tensor | None, au_var: torch.Tensor | None) -> int | None:
    return len(kl) if kl is not None else len(au_var) if au_var is not None else None


def collapsed_dims(kl: torch.Tensor | None, au_var: torch.Tensor | None, kl_threshold: float) -> list[int] | None:
    """Dims whose split-mean KL is under `kl_threshold` nats (or, without a per-dim KL, inactive units)."""
    if kl is not None:
        return [int(j) for j in torch.nonzero(kl < kl_threshold).flatten()]
    if au_var is not None:
        return [int(j) for j in torch.nonzero(au_var <= AU_THRESHOLD).flatten()]
    return None


def verdict(collapsed: list[int] | None, kl, au_var, kl_threshold: float) -> str:
    """One line from the KL criterion (the active-unit count where no per-dim KL exists); where the two
    criteria disagree on a dim, it says so, with both thresholds."""
    if collapsed is None:
        return "collapse: not applicable (the posterior has neither a per-dim KL nor a mean)"
    d = num_dims(kl, au_var)
    by = f"KL < {kl_threshold:g} nats" if kl is not None else f"Var_x E[z_j|x] <= {AU_THRESHOLD:g}"
    if len(collapsed) == d:
        text = f"posterior collapse: all {d} latent dims have {by}"
    elif not collapsed:
        text = f"no collapsed dims: none of the {d} latent dims has {by}"
    else:
        text = f"partial collapse: {len(collapsed)} of {d} dims have {by}: {collapsed}"
    return text + disagreement(collapsed, kl, au_var)


def disagreement(collapsed: list[int], kl, au_var) -> str:
    """'; 2 of them ([3, 7]) still count as active units ...' where a dim is collapsed by KL yet active."""
    if kl is None or au_var is None:
        return ""
    both = [j for j in collapsed if au_var[j] > AU_THRESHOLD]
    if not both:
        return ""
    verb = "counts" if len(both) == 1 else "count"
    return f"; {len(both)} of them still {verb} as active units (their means vary across x): {both}"
