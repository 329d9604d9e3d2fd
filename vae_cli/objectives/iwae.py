"""The importance-weighted bound of Burda et al. 2016, on the same model terms as the ELBO."""
import math
from typing import Callable

import torch

from vae_cli.errors import ConfigError
from vae_cli.objectives.elbo import Objective, elbo_parts, layer_terms, log_weights
from vae_cli.schedules import Constant


class IWAE:
    """The importance-weighted bound (Burda et al. 2016): log (1/K) sum_k w_k, w_k = p(x, z_k) / q(z_k | x).

    loss = -log (1/K) sum_k w~_k with tempered weights log w~ = log p(x|z) + beta_t (log p(z) - log q(z|x)),
    so beta = 1 is the IWAE bound and K = 1 the beta-ELBO with a Monte Carlo KL. Terms: `elbo`, `distortion`,
    `rate` as for Objective (the standard ELBO estimate from the same K samples), `iwae_bound` (B,) and `ess`
    (B,), the effective sample size 1 / sum_k wn_k^2 of the normalized weights, in [1, K]."""

    def __init__(self, num_samples: int = 5, beta: float = 1.0, schedule: Callable[[int], float] | None = None):
        if num_samples < 1 or beta < 0:
            raise ConfigError(f"objective: num_samples={num_samples} must be >= 1 and beta={beta} >= 0")
        self.num_samples, self.beta = int(num_samples), float(beta)
        self.schedule = schedule or Constant()

    requires = "latent_terms"  # the model method this objective calls

    def beta_at(self, step: int) -> float:
        return self.beta * self.schedule(step)

    def knobs(self, step: int) -> dict[str, float]:
        """The step-dependent settings the trainer logs beside the terms."""
        return {"beta": self.beta_at(step)}

    def __call__(self, model, x: torch.Tensor, step: int, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        t = model.latent_terms(x, y, self.num_samples)
        log_k = math.log(self.num_samples)
        tempered = t.log_px + self.beta_at(step) * (t.log_pz - t.log_qz)  # (K, B)
        loss = log_k - torch.logsumexp(tempered, dim=0)
        log_w = log_weights(t)  # (K, B)
        ess = 1.0 / torch.softmax(log_w, dim=0).pow(2).sum(0)  # (B,)
        distortion, rate, kl_dims = elbo_parts(t)
        out = Objective.terms(loss, distortion, rate, kl_dims, x, model.likelihood) | layer_terms(t)
        return out | {"iwae_bound": torch.logsumexp(log_w, dim=0) - log_k, "ess": ess}
