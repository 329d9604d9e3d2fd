"""Hydra config tree, shipped with the package so `vae-train` finds it after `pip install .` too."""
