"""Hydra YAML presets, one per command (`<command>.yaml`); the schemas are dataclasses next to their code."""
