"""Encoders, posteriors, decoders, likelihoods and priors; `VAE` wires them together."""
