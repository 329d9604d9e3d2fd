"""vae-compare: read run dirs (events, .hydra/, lock, logs, metrics.json) into one table and a few pictures.
Read-only: nothing in a run dir is written."""
