"""The plan of a vae-train start: every check that needs no data, run once, and the parts that need no data,
built once, before anything loads. `run_training` then reads plan -> data -> model -> fit.
"""
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from vae_cli.build import (build_data_free, check_kinds, check_values, part_classes, resolve_device, resumable_keys,
                           set_num_classes, set_run_length)
from vae_cli.data import ImageData
from vae_cli.training import distributed
from vae_cli.training.resume import RUN_KEYS, check_resumable, find_checkpoint, keep_first_start, wants_resume
from vae_cli.validate import check_device, check_writable, validate_config, validate_data

log = logging.getLogger("vae_cli")


@dataclass
class Plan:
    """What a start knows before its data loads."""

    cfg: DictConfig  # the composed config; the run length and label count are written in once the data is known
    choices: dict  # group -> option, as Hydra picked them (for messages)
    classes: dict[str, type]  # model, posterior, prior, objective: the classes their nodes name
    device: torch.device
    resume: tuple[dict, Path] | None  # (checkpoint, its path) to continue from
    may_change: tuple[str, ...]  # config paths a resumed run may change (RUN_KEYS + arguments marked RESUMABLE)
    parts: tuple | None  # (objective, trainer); None while the run length waits for the data's size (max_epochs)


def make_plan(cfg: DictConfig, run_dir: Path, choices: dict | None = None) -> Plan:
    """Every check that needs no data, in one pass; raises a UserError for the first failure."""
    choices = choices or {}
    validate_config(cfg)  # train.yaml's keys
    device = distributed.rank_device(resolve_device(cfg.device))
    check_device(cfg, device)
    resume = find_checkpoint(Path(run_dir), cfg.resume) if wants_resume(cfg.get("resume")) else None
    if resume:
        keep_first_start(cfg, resume[0])  # e.g. the cyclical schedule's period
    classes = part_classes(cfg)
    check_kinds(cfg, choices, classes)  # keys of every node; group options that cannot combine
    check_values(cfg)  # every part's argument rules, the data-built parts' included
    parts = build_data_free(cfg)  # their constructors check their arguments (checks.py)
    check_writable(Path(run_dir) / "checkpoints")
    return Plan(cfg, choices, classes, device, resume, RUN_KEYS + resumable_keys(cfg), parts)


def fit_to_data(plan: Plan, data: ImageData) -> tuple:
    """The checks and values that need the data: batch size, run length, label count, whether the checkpoint
    fits the config; -> (objective, trainer), built now if the run length waited for the data."""
    cfg = plan.cfg
    set_run_length(cfg, len(data.train))
    set_num_classes(cfg, data.num_classes)
    validate_data(cfg, len(data.train), data.name)
    if plan.resume:
        check_resumable(*plan.resume, OmegaConf.to_container(cfg, resolve=True), plan.may_change)
    return plan.parts or build_data_free(cfg)
