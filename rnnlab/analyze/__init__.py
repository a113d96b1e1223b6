"""Analyze: `rnnlab analyze RUN` — calibration, mistakes, slices, label issues, behaviour and attributions."""
