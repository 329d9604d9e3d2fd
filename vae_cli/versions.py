"""torch and torchvision are built for each other: a pair from two indexes (a CPU torch beside a CUDA torchvision)
fails when torchvision is imported. That is one line naming both versions and the fix, not a traceback."""
from importlib import metadata

from vae_cli.errors import UserError

FIX = ("install both from one index, e.g. pip install --force-reinstall torch torchvision --index-url "
       "https://download.pytorch.org/whl/cpu (CPU), or the same command without --index-url (CUDA)")


def installed(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def check_torchvision() -> None:
    """Import torchvision; a UserError naming torch's and torchvision's versions if that fails."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError) as e:  # e.g. RuntimeError: operator torchvision::nms does not exist
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"torchvision {installed('torchvision')} does not work with torch {installed('torch')} "
                        f"(importing torchvision failed: {reason}); {FIX}") from None
