"""Test-split numbers of a family without a density (VQ-VAE): distortion, code usage and, with the code prior
of vae-prior, its bits per code and the resulting bound on -log p(x).

With a deterministic posterior (one code grid z(x)), log p(x) >= log p(x | z(x)) + log p_prior(z(x)): the
entropy of q is 0. So distortion + code-prior nats is an upper bound on the NLL, in nats per example."""
import math

import torch

from vae_cli.objectives.discrete import code_statistics
from vae_cli.objectives.elbo import bits_per_dim


@torch.no_grad()
def mean_bits_per_code(net, codes: torch.Tensor, batch_size: int = 1000) -> float:
    """The code prior's NLL, bits per code position, averaged over grids (N, h, w)."""
    return float(sum(net.bits_per_code(c).sum() for c in codes.split(batch_size)) / len(codes))


@torch.no_grad()
def score_codes(model, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepared split x (N, C, H, W) -> distortion -log p(x | z_q) (N,) nats, and the code grids (N, h, w)."""
    distortion, codes = [], []
    for xb in x.split(batch_size):
        t = model.code_terms(xb)
        distortion.append(-t.log_px)
        codes.append(t.codes)
    return torch.cat(distortion).float(), torch.cat(codes)


def code_metrics(model, x: torch.Tensor, batch_size: int, net=None) -> tuple[dict, torch.Tensor]:
    """Split means -> (record entries, per-example distortion (N,)). `net`: the code prior, or None."""
    distortion, codes = score_codes(model, x, batch_size)
    num_codes = model.posterior.num_codes
    perplexity, used = code_statistics(codes, num_codes)
    out = {"distortion": float(distortion.mean()), "perplexity": float(perplexity), "codes_used": int(used),
           "num_codes": num_codes, "uniform_bits_per_code": math.log2(num_codes), "bits_per_code": None,
           "nll_bound": None, "bits_per_dim": None}
    if net is not None:
        out["bits_per_code"] = mean_bits_per_code(net, codes)
        code_nats = out["bits_per_code"] * codes[0].numel() * math.log(2.0)
        out["nll_bound"] = out["distortion"] + code_nats
        out["bits_per_dim"] = float(bits_per_dim(torch.tensor(out["nll_bound"]), x[0].numel(),
                                                 model.likelihood.discrete_offset))
    return out, distortion.cpu()
