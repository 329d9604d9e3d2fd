"""What happens when a step's loss, terms or gradient are not finite: `trainer.nonfinite=raise|skip`.

raise: the update is applied as usual and the run stops at the next log or eval with an error naming the
step and the terms (metrics.Meter keeps them on the device, so no host sync per step).
skip: the update of a bad step is undone on the device (parameters and optimizer state are put back with
torch.where on a device-side finite flag), the skip is counted (train/skipped_steps), and the run stops
with an error once `max_skips` consecutive steps were bad. The count is read at log time, so the error
comes at the first log_every boundary after the limit is reached.
"""
import torch

from vae_cli.errors import NonFiniteError


class NonFiniteGuard:
    def __init__(self, policy: str, max_skips: int, device: torch.device):
        self.skip, self.max_skips = policy == "skip", max_skips
        zero = torch.zeros((), dtype=torch.long, device=device)
        self.skipped, self.consecutive, self.longest = zero.clone(), zero.clone(), zero.clone()  # step counts

    def step(self, opt: torch.optim.Optimizer, ok: torch.Tensor) -> None:
        """opt.step(); under skip, keep its result only where `ok` (a 0-dim bool tensor on the device) is true."""
        if not self.skip:
            opt.step()
            return
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        before = [(p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)})
                  for p in params]
        opt.step()
        with torch.no_grad():
            for p, (p_old, state_old) in zip(params, before):
                p.copy_(torch.where(ok, p, p_old))
                for k, v in opt.state[p].items():
                    if torch.is_tensor(v):  # a state the step created (first step) goes back to Adam's zeros
                        v.copy_(torch.where(ok.to(v.device), v, state_old.get(k, torch.zeros_like(v))))
        self.skipped += ~ok  # in place: a captured CUDA graph replays these updates
        self.consecutive.copy_(torch.where(ok, 0, self.consecutive + 1))
        self.longest.copy_(torch.maximum(self.longest, self.consecutive))

    def check(self, first_bad: str) -> None:
        """At log time: stop once `max_skips` consecutive steps were skipped; `first_bad` describes the first."""
        longest = int(self.longest)
        if self.skip and longest >= self.max_skips:
            raise NonFiniteError(f"{longest} consecutive non-finite steps were skipped (trainer.max_skips="
                                 f"{self.max_skips}); the first was {first_bad}. Lower the lr, set trainer.grad_clip, "
                                 f"or check the data; the last good checkpoint is kept")

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": self.consecutive, "longest": self.longest}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            getattr(self, k).copy_(v)
