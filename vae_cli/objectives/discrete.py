"""Objectives of the discrete-latent families: Gumbel-softmax (annealed temperature) and the VQ-VAE."""
import torch

from vae_cli.errors import ConfigError
from vae_cli.models.base import LatentKind, NoDensityFamily
from vae_cli.objectives.base import Objective
from vae_cli.objectives.elbo import ELBO
from vae_cli.schedules import ExponentialDecay, Schedule


class GumbelObjective(ELBO):
    """The ELBO (weight and free bits as in `ELBO`) with the Gumbel-softmax temperature tau_t =
    temperature(step) as one more knob handed to the model; the KL is to the uniform categorical prior."""

    latent_kinds = frozenset({LatentKind.CATEGORICAL})  # model.latent_terms(..., temperature=)

    def __init__(self, temperature: Schedule | None = None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature or ExponentialDecay()

    def knobs(self, step) -> dict:
        return {**super().knobs(step), "temperature": self.temperature(step)}

    def model_kwargs(self, knobs: dict) -> dict:
        return {"temperature": knobs["temperature"]}


def code_statistics(codes: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """codes (...) int64 -> (perplexity exp(H(p)) of the batch's code frequencies p, number of codes used)."""
    flat = codes.flatten()  # scatter_add into a fixed size: no host sync (bincount sizes its output on the host)
    counts = torch.zeros(num_codes, device=codes.device).scatter_add_(0, flat, torch.ones(flat.shape, device=codes.device))
    p = counts / counts.sum()
    return torch.exp(-torch.special.xlogy(p, p).sum()), (counts > 0).sum().float()


class VQObjective(Objective):
    """VQ-VAE loss per example (nats for the distortion, squared distances summed over the code grid):
    -log p(x | z_q) + ||sg(z_e) - e||^2 + commitment * ||z_e - sg(e)||^2.

    Deterministic: no weight, no knobs. With an EMA codebook the codebook term carries no gradient (the
    codebook is a buffer). No elbo or rate: the posterior is deterministic; bits/dim need the code prior.
    """

    requires = NoDensityFamily  # calls code_terms
    latent_kinds = frozenset({LatentKind.CODE_GRID})

    def __init__(self, commitment: float = 0.25):
        super().__init__(weight=None, num_samples=1)
        if not commitment >= 0:
            raise ConfigError(f"objective.commitment={commitment} must be >= 0")
        self.commitment = float(commitment)

    def model_terms(self, model, x: torch.Tensor, y: torch.Tensor | None, knobs: dict):
        return model.code_terms(x)

    def loss(self, t, knobs: dict, x: torch.Tensor, model) -> dict[str, torch.Tensor]:
        distortion = -t.log_px  # (B,)
        loss = distortion + t.codebook_loss + self.commitment * t.commitment
        perplexity, used = code_statistics(t.codes, t.num_codes)  # batch statistics, shape ()
        return {"loss": loss, "distortion": distortion, "commitment": t.commitment,
                "codebook_loss": t.codebook_loss, "perplexity": perplexity, "codes_used": used}
