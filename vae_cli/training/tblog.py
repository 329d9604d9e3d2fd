"""TensorBoard logging: one event directory per run, tags namespaced train/, val/, kl_per_dim/ ...

The layout a new user opens on: TensorBoard orders sections by the tag prefix before the first '/',
alphabetically, so the four headline curves are also written under headline/ (elbo_val, elbo_train,
rate_val, distortion_val, bits_per_dim_val), which sorts before kl_per_dim/ (one card per latent dim),
the image sections and the full train/ and val/ sections. The step-0 validation of the untrained model
(ELBO around -550 on MNIST) goes to val_at_step_0/, not to the val/ curves, whose axis it would squash.
"""
from pathlib import Path

import torch

HPARAM_METRICS = ("val/elbo", "val/bits_per_dim", "val/rate", "val/active_units")
HEADLINE = {"train": ("elbo",), "val": ("elbo", "rate", "distortion", "bits_per_dim")}
INIT = "val_at_step_0"  # sorts after val/: the step-0 validation, one point per card


class RunLogger:
    def __init__(self, log_dir: Path, config_yaml: str, hparams: dict, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # here: a refused start never loads TensorBoard

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        if purge_step is None:  # a resumed run already holds these
            self.writer.add_text("config", "```yaml\n" + config_yaml + "\n```", 0)
            self._hparams(hparams)

    def _hparams(self, hparams: dict) -> None:
        """HParams tab: the run's knobs, compared against the val/ metrics it logs as ordinary scalars.

        The keys set on the command line (a sweep's varied keys among them) are marked as differing:
        TensorBoard shows those first, and only the first 5 hparams without a click."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        overridden = command_line_keys()
        extra = {k: v for k, v in overridden.items() if k.split(".")[-1] not in hparams}
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in {**hparams, **extra}.items()}
        shown = {k.split(".")[-1] for k in overridden} | set(extra)
        experiment, *starts = hparams_summary(clean, {m: 0.0 for m in HPARAM_METRICS})
        for summary in (mark_differing(experiment, shown), *starts):
            self.writer.file_writer.add_summary(summary)

    def scalars(self, prefix: str, metrics: dict[str, float], step: int) -> None:
        prefix = INIT if prefix == "val" and step == 0 else prefix  # the untrained model: not on the val/ axes
        for name, value in metrics.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)
        for name in HEADLINE.get(prefix, ()):
            if name in metrics:
                self.writer.add_scalar(f"headline/{name}_{prefix}", metrics[name], step)

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


def command_line_keys() -> dict[str, str]:
    """key -> value of the plain key=value overrides of this Hydra job ({} outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    pairs = [o.lstrip("+~").split("=", 1) for o in HydraConfig.get().overrides.task if "=" in o]
    return {k: v for k, v in pairs if k not in ("resume",) and "@" not in k}


def mark_differing(experiment, names: set[str]):
    """The hparams experiment summary with `differs` set on `names` (TensorBoard sorts those first)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in names
    value.metadata.plugin_data.content = data.SerializeToString()
    return experiment
