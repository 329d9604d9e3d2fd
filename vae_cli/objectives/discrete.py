"""Objectives of the discrete-latent families: Gumbel-softmax (annealed temperature) and the VQ-VAE."""
from typing import Callable

import torch

from vae_cli.errors import ConfigError
from vae_cli.models.base import LatentKind
from vae_cli.objectives.elbo import Objective


class GumbelObjective(Objective):
    """The ELBO (beta, schedules and free bits as in `Objective`) with the Gumbel-softmax temperature
    tau_t = temperature(step) handed to the model; the KL is to the uniform categorical prior."""

    latent_kinds = frozenset({LatentKind.CATEGORICAL})  # model.latent_terms(..., temperature=)

    def __init__(self, temperature: Callable[[int], float], **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def knobs(self, step: int) -> dict[str, float]:
        return {**super().knobs(step), "temperature": self.temperature(step)}

    def latent_terms(self, model, x: torch.Tensor, y: torch.Tensor | None, step: int):
        return model.latent_terms(x, y, self.num_samples, temperature=self.temperature(step))


def code_statistics(codes: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """codes (...) int64 -> (perplexity exp(H(p)) of the batch's code frequencies p, number of codes used)."""
    counts = torch.bincount(codes.flatten(), minlength=num_codes).float()
    p = counts / counts.sum()
    return torch.exp(-torch.special.xlogy(p, p).sum()), (counts > 0).sum().float()


class VQObjective:
    """VQ-VAE loss per example (nats for the distortion, squared distances summed over the code grid):
    -log p(x | z_q) + ||sg(z_e) - e||^2 + commitment * ||z_e - sg(e)||^2.

    With an EMA codebook the codebook term carries no gradient (the codebook is a buffer). No elbo or
    rate: the posterior is deterministic; bits/dim need the code prior (`vae-prior`).
    """

    requires = "vq_terms"  # the model method this objective calls
    latent_kinds = frozenset({LatentKind.CODE_GRID})

    def __init__(self, commitment: float = 0.25):
        if commitment < 0:
            raise ConfigError(f"objective.commitment={commitment} must be >= 0")
        self.commitment = float(commitment)

    def knobs(self, step: int) -> dict[str, float]:
        return {}

    def __call__(self, model, x: torch.Tensor, step: int, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        q, log_px = model.vq_terms(x)
        distortion = -log_px  # (B,)
        loss = distortion + q.codebook_loss + self.commitment * q.commitment
        perplexity, used = code_statistics(q.codes, model.posterior.num_codes)  # batch statistics, shape ()
        return {"loss": loss, "distortion": distortion, "commitment": q.commitment,
                "codebook_loss": q.codebook_loss, "perplexity": perplexity, "codes_used": used}
