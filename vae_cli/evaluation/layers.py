"""Per-layer collapse numbers for hierarchical models: KL, active units and collapsed dims of each layer."""
import torch

from vae_cli.evaluation.collapse import active_units


@torch.no_grad()
def layer_report(model, x: torch.Tensor, y: torch.Tensor, kl_per_dim: torch.Tensor | None, batch_size: int,
                 kl_threshold: float = 0.01) -> list[dict] | None:
    """One dict per stochastic layer, bottom (next to x) first: `kl` (nats, split mean), `active_units`
    (Var_x of the layer's posterior mean on the posterior-mean path > 0.01), `collapsed_dims` (KL < threshold,
    indices within the layer). kl_per_dim (D_1 + ... + D_L,) is z_1's dims first. None for one-layer models
    (or ones that expose no `layer_means`)."""
    if not hasattr(model, "layer_means") or getattr(model, "num_layers", 1) < 2:
        return None
    per_batch = [model.layer_means(xb, yb)[0] for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    means = [torch.cat([b[l] for b in per_batch]) for l in range(model.num_layers)]  # L x (N, D_l)
    kls = kl_per_dim.split(list(model.dims)) if kl_per_dim is not None else [None] * model.num_layers
    return [{"layer": l + 1, "dims": int(m.shape[1]), "active_units": active_units(m),
             "kl": None if kl is None else float(kl.sum()),
             "collapsed_dims": None if kl is None else [int(j) for j in torch.nonzero(kl < kl_threshold).flatten()]}
            for l, (m, kl) in enumerate(zip(means, kls))]
