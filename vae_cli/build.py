"""The composition root: the one module that reads the config and instantiates objects.

Values that depend on the data or on another part (image shape, decoder channels, encoder width,
run length) are passed in here; modules never see a DictConfig.
"""
import inspect
import logging
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from vae_cli.training.checkpoint import check_version, load_checkpoint
from vae_cli.data import ImageData
from vae_cli.errors import ConfigError, UserError
from vae_cli.models.base import check_objective_kind, check_parts
from vae_cli.checks import check_arguments, resumable

log = logging.getLogger("vae_cli")


def make(node: DictConfig, **kwargs):
    """instantiate(node) with plain containers. The one place Hydra's InstantiationException is unwrapped: a
    constructor's UserError surfaces as it is, anything else (a keyword the target does not take, a bad value,
    an unknown _target_) as one ConfigError naming the node."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        where = node.get("_target_", node._get_full_key(None))
        raise ConfigError(f"{where}: {' '.join(str(cause or e).split())}") from None


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
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name} cannot train (no storage for data); use auto, cpu, cuda, cuda:N or mps")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name} but MPS is not available here; use device=auto")
    return device


def build_data_free(cfg: DictConfig) -> tuple | None:
    """(objective, trainer): the parts that need no data, once the run length is known (max_steps set, or
    filled in from the data by set_run_length); None before that."""
    if cfg.max_steps is None:
        return None
    return build_objective(cfg), build_trainer(cfg)


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
    latent_dim = cfg.model.decoder.get("latent_dim") or posterior.out_features
    decoder = make(cfg.model.decoder, image_shape=image_shape, latent_dim=latent_dim + extra,
                   out_channels=likelihood.out_channels)
    fills = {"image_shape": lambda: image_shape, "grid_shape": lambda: tuple(encoder.grid_shape)}
    prior = make(cfg.prior, **{name: fills[name]() for name in target(cfg.prior).fill})  # as the prior declares
    parts = {"condition": condition} if condition is not None else {}
    return make(cfg.model, encoder=encoder, decoder=decoder, posterior=posterior, likelihood=likelihood,
                prior=prior, **parts)


def target(node: DictConfig) -> type:
    """The class a config node names, without building it (its declared kinds are class attributes)."""
    try:
        return get_class(node._target_)
    except Exception as e:  # Hydra raises ImportError or ValueError for an unknown _target_
        raise ConfigError(f"{node._get_full_key(None)}._target_={node._target_!r} is not a class ({e})") from None


KIND_GROUPS = ("model", "posterior", "prior", "objective")  # the groups whose classes declare latent kinds


def part_classes(cfg: DictConfig) -> dict[str, type]:
    """group -> the class its node names, resolved without building anything."""
    return {group: target(cfg[group]) for group in KIND_GROUPS}


def check_kinds(cfg: DictConfig, choices: dict | None = None, classes: dict[str, type] | None = None) -> None:
    """Every node's keys against its target's keywords; group options that cannot combine, refused from the
    classes' declared kinds before any data loads."""
    names = {k: v for k, v in (choices or {}).items() if k in KIND_GROUPS}
    check_keys(cfg, choices or {})
    c = classes or part_classes(cfg)
    conditional = cfg.model.get("condition") is not None  # model=cvae: q(z|x, y)
    check_parts(c["model"], c["posterior"], c["prior"], names, conditional=conditional)
    check_objective_kind(c["model"], c["objective"], names)


HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def check_keys(cfg: DictConfig, choices: dict) -> None:
    """Every key of a node with a `_target_` is a keyword its target takes. A key another preset left behind
    (experiment=vamp_1layer model=conv: the ladder's model.encoder.hidden_sizes on a ConvEncoder) is one line
    naming the key, before any data loads, not the constructor's TypeError after."""
    for path, node in _target_nodes(cfg):
        takes = _keywords(node._target_)
        extra = [k for k in node if k not in HYDRA_KEYS and takes is not None and k not in takes]
        if extra:
            raise ConfigError(f"{path}.{extra[0]}: {_owner(node._target_)} takes no key {extra[0]!r} "
                              f"(it takes {', '.join(sorted(takes - HYDRA_KEYS)) or 'none'}){_left_by(path, choices)}")


def _target_nodes(node: DictConfig, path: str = ""):
    """(dotted path, node) for every node holding a `_target_`, outermost first; interpolations not followed."""
    if "_target_" in node:
        yield path, node
    for key in node:
        if not OmegaConf.is_interpolation(node, key) and isinstance(node[key], DictConfig):
            yield from _target_nodes(node[key], f"{path}.{key}" if path else str(key))


def check_values(cfg: DictConfig) -> None:
    """Every `_target_` node's values against the rules annotated on its target's arguments (checks.py), before
    anything is built: the parts built only from the data (dataset, model) are refused before it loads."""
    for path, node in _target_nodes(cfg):
        fn = _object(node._target_)
        values = OmegaConf.to_container(node, resolve=True)
        pending = [k for k, v in values.items() if v is None and OmegaConf.is_interpolation(node, k)]  # ${max_steps}
        if fn is not None:  # before the data, under max_epochs: its constructor checks it once it is known
            check_arguments(path, fn, {k: v for k, v in values.items() if k not in pending})


def resumable_keys(cfg: DictConfig) -> tuple[str, ...]:
    """The config paths of every constructor argument marked RESUMABLE (checks.py), under each `_target_` node."""
    return tuple(f"{path}.{name}" for path, node in _target_nodes(cfg) for name in resumable(_object(node._target_)))


def _object(name: str):
    try:
        return get_object(name)
    except Exception:  # an unknown _target_: target() and make() name it
        return None


def _owner(name: str) -> str:
    """The class (or function) a `_target_` names: Trainer for vae_cli.training.trainer.Trainer.from_knobs."""
    try:
        return get_object(name).__qualname__.split(".")[0]
    except Exception:  # an unknown _target_: target() and make() name it
        return name.rsplit(".", 1)[-1]


def _keywords(name: str) -> set[str] | None:
    """The keyword names a class or function takes; None when it takes any (**kwargs) or cannot be found."""
    try:
        params = inspect.signature(get_object(name)).parameters.values()
    except Exception:  # an unknown _target_: target() and make() name it
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _left_by(path: str, choices: dict) -> str:
    group, experiment = path.split(".")[0], choices.get("experiment")
    if experiment and choices.get(group):
        return (f"; experiment={experiment} sets it for the {group} preset it is built on: drop "
                f"{group}={choices[group]}, or leave the experiment out and pick the groups yourself")
    return "; remove it, or pick the option that takes it"


def build_code_prior(cfg: DictConfig, num_codes: int) -> torch.nn.Module:
    """vae-prior's network (config code_prior.yaml) over `num_codes` codes of a VQ-VAE."""
    return make(cfg.network, num_codes=num_codes)


def load_model_from_checkpoint(path: str | Path, device: torch.device, data_dir: str | None = None, check=None):
    """THE checkpoint loader of every tool: one version policy; rebuild data and model from the stored config
    alone -> (model in eval mode, data, cfg, state). `check(family_class)` runs before any data loads."""
    state = load_checkpoint(path)
    check_version(state, path)
    if state["task"] != "vae":  # what the checkpoint declares it holds (training/task.py)
        raise UserError(f"{path} is a VQ-VAE's code prior (written by vae-prior), not a model checkpoint: pass the "
                        f"VQ-VAE checkpoint beside it, e.g. ckpt={Path(path).parent / 'best.pt'} (its code prior "
                        f"is found from there)")
    cfg = OmegaConf.create(state["config"])
    if check is not None:
        check(target(cfg.model))
    point_data(cfg, data_dir)
    data = build_data(cfg)
    try:
        model = build_model(cfg, data.image_shape)
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, AttributeError, ConfigError) as e:
        raise UserError(f"checkpoint {path} does not fit the model its config builds with this vae-cli "
                        f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), data, cfg, state


def point_data(cfg: DictConfig, data_dir: str | None) -> None:
    """vae-eval/vae-sample's data_dir= replaces where the run's data lives (data_dir, or a folder run's
    dataset.path); a folder that has moved since training is one line saying so."""
    key = "path" if "path" in cfg.dataset else "root"
    if data_dir is not None and key in cfg.dataset:
        cfg.dataset[key] = data_dir
        if key == "root":
            cfg.data_dir = data_dir
    path = cfg.dataset.get("path")
    if key == "path" and path and not Path(str(path)).expanduser().is_dir():
        raise UserError(f"the run trained on dataset.path={path}, which is no longer there: if it moved, pass "
                        f"its new place as data_dir=NEW_DIR")


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
    trainer = make(cfg.trainer, optimizer=optimizer, lr_schedule=schedule)
    _try_on_stand_in(optimizer, schedule)
    return trainer


def _try_on_stand_in(optimizer, schedule) -> None:
    """Build the optimizer and lr-schedule partials once on a stand-in parameter, so their own range checks
    (torch's for lr and weight_decay, the schedule's) fire before data loads; the trainer builds the real ones."""
    stand_in = [torch.zeros(1, requires_grad=True)]
    try:
        opt = optimizer(stand_in) if optimizer is not None else torch.optim.SGD(stand_in, lr=1.0)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer: {' '.join(str(e).split())}") from None
    if schedule is not None:
        schedule(optimizer=opt)
