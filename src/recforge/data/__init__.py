"""Data stage: the Interactions container, dataset loaders, preprocessing and splits."""

from recforge.data.interactions import IdMap, Interactions

__all__ = ["IdMap", "Interactions"]
