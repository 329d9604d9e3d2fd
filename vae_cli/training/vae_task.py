"""vae-train's task for the training loop: a model family, its objective and an image dataset."""
import torch

from vae_cli.data import ImageData, prepare_fixed
from vae_cli.pictures import fixed_labels, make_grid, sample_grids
from vae_cli.training.knobs import Evaluation
from vae_cli.training.meter import evaluate_split
from vae_cli.training.speed import TrainStep
from vae_cli.training.task import Task


class VAETask(Task):
    """Train `model` (a models.base.Family) with `objective` on `data`; best.pt by the family's `best_metric`."""

    name = "vae"

    def __init__(self, model, objective, data: ImageData):
        self.module, self.objective, self.data = model, objective, data
        self.train, self.best_metric = data.train, model.best_metric
        self.device, self.seed, self.evaluation = torch.device("cpu"), 0, Evaluation()
        self.val_x = self.val_y = self.fixed_y = None  # the fixed validation inputs, made by `to`

    def to(self, device: torch.device, seed: int, evaluation: Evaluation) -> None:
        self.device, self.seed, self.evaluation = torch.device(device), seed, evaluation
        self.module.to(self.device)
        self.data = self.data.to(self.device)
        self.train = self.data.train
        self.val_x = prepare_fixed(self.module.likelihood.prepare, self.data.val.images, seed)
        self.val_y = self.data.val.labels
        self.fixed_y = fixed_labels(evaluation.num_images, self.data.num_classes, self.device)  # conditional models

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module.likelihood.prepare(batch)

    def step_module(self) -> torch.nn.Module:
        return TrainStep(self.module, self.objective)

    def knobs(self, step) -> dict:
        return self.objective.knobs(step)

    @torch.no_grad()
    def validate(self, step: int, logger) -> dict:
        model = self.module
        val = evaluate_split(model, self.objective, self.val_x, self.val_y, step, self.evaluation.eval_batch_size,
                             self.seed)
        kl, kl_layers = val.pop("kl_per_dim"), val.pop("kl_per_layer", None)
        logger.scalars("val", {**val, **self.objective.knobs(step)}, step)
        if kl is not None:
            logger.kl_per_dim(kl, step)
        if kl_layers is not None:  # hierarchical models: kl_per_layer/layer_1 is next to x
            logger.scalars("kl_per_layer", {f"layer_{i + 1}": v for i, v in enumerate(kl_layers.tolist())}, step)
        self._log_images(logger, step)
        return val

    def _fixed_prior_samples(self) -> torch.Tensor:
        """The same prior noise (seeded) at every eval, drawn through the current prior (priors can be learned),
        so sample grids are comparable across steps."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.seed)
            return self.module.prior_dist().sample((self.evaluation.num_images,))

    def _log_images(self, logger, step: int) -> None:
        model, n = self.module, self.evaluation.num_images
        for tag, (images, nrow) in sample_grids(model, self._fixed_prior_samples(), self.fixed_y).items():
            logger.image(tag, make_grid(images.float(), nrow=nrow), step)
        x, y = self.val_x[: n // 2], self.val_y[: n // 2]
        pairs = torch.stack([x, model.likelihood.mean(model(x, y))], dim=1).flatten(0, 1)  # input, reconstruction, ...
        logger.image("reconstructions/val", make_grid(pairs.float(), nrow=8), step)
