"""Gantry's JupyterHub spawner: ``c.JupyterHub.spawner_class = "gantry"``.

See :class:`GantrySpawner` and docs/jupyterhub.md in Gantry's repository.
"""

from .spawner import GantrySpawner, SpawnFailed

__all__ = ["GantrySpawner", "SpawnFailed"]
