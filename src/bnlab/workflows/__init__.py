"""The command engines behind `bnlab landscape`, `hessian`, `sharpness` and `study`: each parses nothing, takes a
frozen config, runs probes and trials from the floors below and writes one output folder."""
