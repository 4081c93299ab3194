"""Trainer configs shipped inside the package, so `sweep train` finds its default from any directory."""
