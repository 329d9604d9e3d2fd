"""Config groups only `vae-eval` uses (preset/), kept out of the shared config root so that `vae-train`
neither lists nor accepts them; configs/eval.yaml adds this package to its search path."""
