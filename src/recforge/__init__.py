"""recforge: a recommender toolkit from interaction logs to a served API.

Importing the package is cheap: no model module and no torch is imported until used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
