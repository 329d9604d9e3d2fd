"""Metrics accumulated on the device and read back rarely; validation over a whole split."""
import torch

from vae_cli.errors import NonFiniteError
from vae_cli.evaluation.collapse import active_units, posterior_mean

SCALARS = ("loss", "elbo", "distortion", "rate", "bits_per_dim")
VECTORS = ("kl_per_dim", "kl_per_layer")  # batch means over latent dims / stochastic layers


def extra_scalars(terms: dict) -> list[str]:
    """Per-example terms an objective adds beyond SCALARS (e.g. IWAE's iwae_bound, ess)."""
    return [k for k in terms if k not in SCALARS and k not in VECTORS]


class Meter:
    """Running sums of the batch-mean terms, kept on the device: no host sync per step.

    It also remembers the first step whose loss or gradient norm was non-finite, and the terms then.
    Every update after the first `add` is in place, so a captured CUDA graph keeps accumulating into the
    same tensors when it is replayed.
    """

    def __init__(self, device: torch.device, skip: bool = False):
        self.device, self.skip = device, skip  # skip: bad steps are left out of the means, not raised
        self.names = list(SCALARS)  # those of SCALARS the objective returns (the VQ-VAE's have no elbo)
        self._allocate()
        self.first_bad = torch.tensor(-1, device=device)
        self.good = torch.zeros((), device=self.device)  # finite steps in the window
        self.kl_sum, self.extra = None, {}

    def _allocate(self) -> None:
        self.sums = torch.zeros(len(self.names) + 1, device=self.device)  # terms..., grad_norm
        self.bad_terms = torch.zeros(len(self.names) + 1, device=self.device)

    def reset(self) -> None:
        """Zero the window's sums in place (the first bad step is kept until the run ends)."""
        for t in (self.sums, self.good, self.kl_sum, *self.extra.values()):
            if t is not None:
                t.zero_()

    def add(self, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor, step) -> torch.Tensor:
        """Accumulate one step (`step`: an int or the step tensor); returns whether all its terms and the
        gradient norm are finite (0-dim bool)."""
        if [k for k in SCALARS if k in terms] != self.names:  # the first step of an objective without some
            self.names = [k for k in SCALARS if k in terms]
            self._allocate()
        per_example = torch.stack([terms[k].detach() for k in self.names]).float()  # (T, B)
        values = torch.cat([per_example.mean(1), grad_norm.detach().float().view(1)])  # (T + 1,)
        ok = torch.isfinite(values).all()
        newly_bad = (self.first_bad < 0) & ~ok
        self.first_bad.copy_(torch.where(newly_bad, step, self.first_bad))
        self.bad_terms.copy_(torch.where(newly_bad, values, self.bad_terms))
        self.sums.add_(torch.where(ok, values, 0.0))
        self.good.add_(ok)
        if "kl_per_dim" in terms:
            kl = torch.where(ok, terms["kl_per_dim"].detach().float(), 0.0)
            self.kl_sum = kl.clone() if self.kl_sum is None else self.kl_sum.add_(kl)
        for k in extra_scalars(terms):
            value = torch.where(ok, terms[k].detach().float().mean(), 0.0)
            self.extra[k] = value.clone() if k not in self.extra else self.extra[k].add_(value)
        return ok

    def describe_first_bad(self) -> str:
        """'step 12: distortion=nan, grad_norm=nan' for the first non-finite step, or '' if there was none."""
        step = int(self.first_bad)
        if step < 0:
            return ""
        names = [*self.names, "grad_norm"]
        bad = [f"{n}={v:g}" for n, v in zip(names, self.bad_terms.tolist()) if not torch.isfinite(torch.tensor(v))]
        return f"step {step}: {', '.join(bad)}"

    def check_finite(self) -> None:
        """Raise naming the first bad step and which of the terms (or the gradient) was not finite."""
        if not self.skip and (bad := self.describe_first_bad()):
            raise NonFiniteError(f"non-finite value at {bad}; the last good checkpoint "
                                 f"is kept (lower the lr, set trainer.grad_clip, or check the data)")

    def means(self) -> dict[str, float]:
        """Means over the window's finite steps (nan if every step of the window was skipped)."""
        self.check_finite()
        values = (self.sums / self.good).tolist()
        extra = {k: float(v / self.good) for k, v in self.extra.items()}
        return dict(zip([*self.names, "grad_norm"], values)) | extra

    def state_dict(self) -> dict:
        return {"names": list(self.names), "sums": self.sums, "good": self.good, "kl_sum": self.kl_sum,
                "first_bad": self.first_bad, "bad_terms": self.bad_terms, "extra": self.extra}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            if k == "count":  # older checkpoints kept a step count; the trainer has it
                continue
            if k == "extra":  # objective-specific terms (IWAE's iwae_bound, ess)
                v = {name: t.to(self.device) for name, t in v.items()}
            setattr(self, k, v.to(self.device) if torch.is_tensor(v) else v)


@torch.no_grad()
def evaluate_split(model, objective, x: torch.Tensor, y: torch.Tensor, step: int, batch_size: int, seed: int) -> dict:
    """Mean terms over a prepared split under a fixed seed (same noise every call), KL per dim (and per layer)
    and active units (Burda et al. 2016: dims with Var_x E_q[z_j] > 0.01)."""
    devices = [x.device] if x.device.type == "cuda" else []
    sums, means = {}, []  # name -> sum over examples: scalar terms, and (D,) / (L,) for VECTORS
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for chunk, labels in zip(x.split(batch_size), y.split(batch_size)):
            terms = objective(model, chunk, step, labels)
            for k, v in terms.items():
                # per-example terms are summed; vectors and batch statistics (shape ()) weighted by the chunk
                total = v.float() * len(chunk) if k in VECTORS or v.ndim == 0 else v.float().sum()
                sums[k] = total if k not in sums else sums[k] + total
            means.append(posterior_mean(model, chunk, labels))
    out = {k: (v / len(x)).item() for k, v in sums.items() if k not in VECTORS}
    out |= {k: (sums[k] / len(x)).cpu() if k in sums else None for k in VECTORS}
    out["active_units"] = active_units(torch.cat(means)) if means[0] is not None else float("nan")
    return out

