"""The composition root: the one module that reads the config and instantiates objects.

Values that depend on the data or on another part (image shape, decoder channels, encoder width,
run length) are passed in here; modules never see a DictConfig.
"""
import logging
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_cli.training.checkpoint import check_version, load_checkpoint
from vae_cli.data import ImageData
from vae_cli.errors import ConfigError, UserError
from vae_cli.validate import validate_config

log = logging.getLogger("vae_cli")


def make(node: DictConfig, **kwargs):
    """instantiate(node) with plain containers; a constructor's UserError (or a TypeError/ValueError from
    bad config values) surfaces as one clear error instead of Hydra's wrapper."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError(f"{node.get('_target_', node._get_full_key(None))}: {cause}") from None
        raise


def resolve_device(name: str) -> torch.device:
    """auto -> cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ConfigError(f"device={name} but {torch.cuda.device_count()} CUDA devices are visible; use device=auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name} but MPS is not available here; use device=auto")
    return device


def check_config(cfg: DictConfig) -> None:
    """Range checks on the top-level knobs, before any data is loaded."""
    validate_config(cfg)
    for key in ("latent_dim", "max_steps", "max_epochs"):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(f"{key}={value!r} must be a positive integer")
    if cfg.max_steps is None and cfg.max_epochs is None:
        raise ConfigError("set max_steps or max_epochs")


def build_data(cfg: DictConfig) -> ImageData:
    return make(cfg.dataset)


def set_run_length(cfg: DictConfig, num_train: int) -> int:
    """max_steps wins; otherwise max_epochs full batches per epoch. Written back so ${max_steps} resolves."""
    steps = cfg.max_steps or cfg.max_epochs * max(num_train // cfg.trainer.batch_size, 1)
    with open_dict(cfg):
        cfg.max_steps = int(steps)
    return cfg.max_steps


def set_num_classes(cfg: DictConfig, num_classes: int) -> None:
    """A conditional model's label count comes from the data; written back so checkpoints rebuild alone."""
    if cfg.model.get("condition") is not None:
        with open_dict(cfg):
            cfg.model.condition.num_classes = int(num_classes)


def build_model(cfg: DictConfig, image_shape: tuple[int, int, int]) -> torch.nn.Module:
    """Parts in dependency order. Filled in here: image shape, decoder output channels, the posterior's input
    width (encoder features + label embedding), and the decoder's input width: `model.decoder.latent_dim`,
    or when that is null the posterior's `out_features` (categorical N*C, VQ code dim), + label embedding."""
    likelihood = make(cfg.likelihood, image_shape=image_shape)
    condition = make(cfg.model.condition) if cfg.model.get("condition") else None
    extra = condition.out_features if condition is not None else 0  # E
    encoder = make(cfg.model.encoder, image_shape=image_shape)
    posterior = make(cfg.posterior, in_features=encoder.out_features + extra)
    latent_dim = cfg.model.decoder.get("latent_dim") or getattr(posterior, "out_features", cfg.latent_dim)
    decoder = make(cfg.model.decoder, image_shape=image_shape, latent_dim=latent_dim + extra,
                   out_channels=likelihood.num_params * image_shape[0])
    in_data_space = {"image_shape": image_shape} if "image_shape" in cfg.prior else {}  # VampPrior's pseudo-inputs
    prior = make(cfg.prior, **in_data_space)
    parts = {"condition": condition} if condition is not None else {}
    return make(cfg.model, encoder=encoder, decoder=decoder, posterior=posterior, likelihood=likelihood,
                prior=prior, **parts)


def build_code_prior(cfg: DictConfig, num_codes: int) -> torch.nn.Module:
    """vae-prior's network (config code_prior.yaml) over `num_codes` codes of a VQ-VAE."""
    return make(cfg.network, num_codes=num_codes)


def load_model_from_checkpoint(path: str | Path, device: torch.device, data_dir: str | None = None):
    """Rebuild data and model from a checkpoint's stored config alone -> (model in eval mode, data, cfg, state)."""
    state = load_checkpoint(path)
    check_version(state, path)
    cfg = OmegaConf.create(state["config"])
    if data_dir is not None and "root" in cfg.dataset:
        cfg.data_dir = cfg.dataset.root = data_dir
    data = build_data(cfg)
    try:
        model = build_model(cfg, data.image_shape)
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, AttributeError, InstantiationException) as e:
        raise UserError(f"checkpoint {path} does not fit the model its config builds with this vae-cli "
                        f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), data, cfg, state


def build_sample_mode(cfg: DictConfig):
    """The `mode` config group of vae-sample: one small class per picture."""
    return make(cfg.mode)


def build_objective(cfg: DictConfig):
    """The objective with its injected Weight (beta x schedule) and, for gumbel, the temperature schedule."""
    return make(cfg.objective)


def build_trainer(cfg: DictConfig):
    """The Trainer with the optimizer and lr-schedule partials (configs/optimizer, configs/lr_schedule):
    total_steps is filled here (the run length is known); the parameters, the device options (capturable,
    a device-tensor lr for a captured step) and the optimizer are filled by the trainer once the model is on
    its device."""
    optimizer = make(cfg.optimizer) if "optimizer" in cfg else None
    schedule = make(cfg.lr_schedule, total_steps=cfg.max_steps) if "lr_schedule" in cfg else None
    return make(cfg.trainer, optimizer=optimizer, lr_schedule=schedule)


def check_compatible(model, data: ImageData, choices: dict) -> None:
    if model.likelihood.binary and not data.binarizable:
        raise ConfigError(f"likelihood={choices.get('likelihood', 'bernoulli')} needs binarizable greyscale "
                          f"images, but dataset={data.name} holds 8-bit colour images: use likelihood=gaussian")
    if getattr(model.prior, "needs_posterior_density", False) and not getattr(model.posterior, "density_anywhere", True):
        raise ConfigError(f"prior={choices.get('prior')} evaluates q(z|x) at arbitrary z, which "
                          f"posterior={choices.get('posterior')} (a flow) cannot: use posterior=gaussian or mixture")


def check_objective(model, objective, choices: dict) -> None:
    """An objective calls one model method (`requires`); say which pairing is wrong instead of an AttributeError."""
    needed = getattr(objective, "requires", None)
    if needed and not hasattr(model, needed):
        raise ConfigError(f"objective={choices.get('objective', type(objective).__name__)} does not apply to "
                          f"{type(model).__name__} (model={choices.get('model', '?')}); leave objective to the "
                          f"model preset (model=vqvae picks objective=vq, model=gumbel objective=gumbel)")
