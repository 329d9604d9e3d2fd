"""TensorBoard logging: one event directory per run, tags namespaced train/, val/, kl_per_dim/ ..."""
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

HPARAM_METRICS = ("val/elbo", "val/bits_per_dim", "val/rate", "val/active_units")


class RunLogger:
    def __init__(self, log_dir: Path, config_yaml: str, hparams: dict, purge_step: int | None = None):
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        if purge_step is None:  # a resumed run already holds these
            self.writer.add_text("config", "```yaml\n" + config_yaml + "\n```", 0)
            self._hparams(hparams)

    def _hparams(self, hparams: dict) -> None:
        """HParams tab: the run's knobs, compared against the val/ metrics it logs as ordinary scalars."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        for summary in hparams_summary(clean, {m: 0.0 for m in HPARAM_METRICS}):
            self.writer.file_writer.add_summary(summary)

    def scalars(self, prefix: str, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def kl_per_dim(self, kl: torch.Tensor, step: int) -> None:
        """One scalar per latent dim (kl_per_dim/dim_07) and a histogram of all of them."""
        width = len(str(len(kl) - 1))
        for j, value in enumerate(kl.tolist()):
            self.writer.add_scalar(f"kl_per_dim/dim_{j:0{width}d}", value, step)
        self.writer.add_histogram("kl_per_dim/all", kl, step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, grid.clamp(0, 1), step)  # (C, H, W) in [0, 1]

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        self.writer.close()
