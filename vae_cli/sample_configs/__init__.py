"""Config groups only `vae-sample` uses (mode/), kept out of the shared config root so that `vae-train`
neither lists nor accepts them; configs/sample.yaml adds this package to its search path."""
