"""Recommender models, one module per family; find them by name with `recforge.registry`."""
