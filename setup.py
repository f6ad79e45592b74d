"""Install the top-level folders `flows/`, `tasks/` and `model/` as `fineforge.flows`, `fineforge.tasks` and
`fineforge.model`, so that nothing with a generic name lands in site-packages (the rest is in pyproject.toml)."""

from setuptools import find_packages, setup

LAYERS = ("flows", "tasks", "model")

packages = find_packages(include=[name for layer in LAYERS for name in (layer, f"{layer}.*")])
setup(
    packages=[f"fineforge.{package}" for package in packages],
    package_dir={f"fineforge.{layer}": layer for layer in LAYERS},
)
