"""The sweep service: CLI, config, Tuner assembly, MLflow, resume and reports."""
