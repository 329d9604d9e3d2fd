"""`python -m vae_cli.compare PATH...` = `vae-compare PATH...`."""
from vae_cli.compare.cli import main

main()
