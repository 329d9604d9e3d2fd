"""Helpers for sweep launchers: an OmegaConf resolver that spreads parallel jobs over the CUDA devices."""
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


def gpu_for_job(job_num=None) -> str:
    """Job N of a sweep -> cuda:(N mod device count) when several devices are visible, else auto.
    Without an argument, N is the running Hydra job's number (0 outside Hydra)."""
    if job_num is None:
        job_num = HydraConfig.get().job.get("num", 0) if HydraConfig.initialized() else 0
    count = torch.cuda.device_count()
    return f"cuda:{int(job_num) % count}" if count > 1 else "auto"


def register_resolvers() -> None:
    """Idempotent; called by the CLI in every process that runs a job (joblib workers included)."""
    if not OmegaConf.has_resolver("gpu_for_job"):
        OmegaConf.register_new_resolver("gpu_for_job", gpu_for_job)
