"""Sweeping an existing torchrun training script: the launcher that runs it on every Ray Train worker
(`launcher`), the child process it watches (`process`), the metrics-line parser for scripts that only print
(`metrics_parser`) and the report channel shared with `trainable.hook` (`channel`).

Nothing is imported here on purpose: `trainable.hook` uses `channel` inside user scripts, which must not
pay for torch or ray imports.
"""
