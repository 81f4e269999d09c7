"""Model registry: name → "module:Class", imported lazily so `import recforge` stays cheap."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recforge.errors import ConfigError

if TYPE_CHECKING:
    from recforge.models.base import Recommender

# name -> (import target, one-line summary). Summaries live here so listing needs no import.
_REGISTRY: dict[str, tuple[str, str]] = {
    "popularity": ("recforge.models.popularity:Popularity",
                   "Most-popular items (by training count); mean rating for rating prediction."),
    "itemknn": ("recforge.models.knn:ItemKNN",
                "Item-based neighbourhood CF (cosine/pearson/euclidean/jaccard, shrinkage, baseline)."),
    "userknn": ("recforge.models.knn:UserKNN",
                "User-based neighbourhood CF (cosine/pearson/euclidean/jaccard, shrinkage, baseline)."),
    "mf": ("recforge.models.mf:MatrixFactorization",
           "Biased matrix factorization: explicit (MSE) or implicit (BPR/BCE/sampled softmax)."),
    "bpr": ("recforge.models.bpr:BPR",
            "BPR matrix factorization (Rendle et al. 2009) by a compiled lock-free SGD kernel."),
    "ials": ("recforge.models.ials:ImplicitALS",
             "Implicit ALS with confidence weighting (Hu, Koren & Volinsky 2008)."),
    "ease": ("recforge.models.ease:EASE", "Closed-form shallow autoencoder EASE^R (Steck 2019)."),
    "ncf": ("recforge.models.ncf:NCF", "Neural collaborative filtering: GMF, MLP or NeuMF (He et al. 2017)."),
    "autorec": ("recforge.models.autorec:AutoRec", "Item-based AutoRec for ratings (Sedhain et al. 2015)."),
    "multvae": ("recforge.models.multvae:MultVAE",
                "Mult-VAE / Mult-DAE for implicit feedback (Liang et al. 2018)."),
    "content": ("recforge.models.content:ContentBased",
                "Content-based: cosine of the mean liked-item feature profile (optional autoencoder)."),
    "demographic_popularity": ("recforge.models.demographic:DemographicPopularity",
                               "Most popular items within the user's demographic group (age bucket x gender)."),
    "two_tower": ("recforge.models.two_tower:TwoTower",
                  "Two-tower retrieval: ID + feature towers, sampled softmax/BPR; cold users/items via features."),
    "hybrid": ("recforge.models.hybrid:Hybrid",
               "CF + feature model blended by history length; features only for cold users."),
    "deepfm": ("recforge.models.deepfm:DeepFM", "DeepFM over ID and feature fields, BCE (Guo et al. 2017)."),
    "transition": ("recforge.models.transition:Transition",
                   "First-order Markov next-item counts (last item -> next), backed off to popularity."),
    "gru4rec": ("recforge.models.gru4rec:GRU4Rec",
                "GRU over the user's ordered items, softmax over the catalog at every step (Hidasi et al. 2016)."),
    "sasrec": ("recforge.models.sasrec:SASRec",
               "Causal self-attention over the user's ordered items, catalog softmax (Kang & McAuley 2018)."),
    "widedeep": ("recforge.models.deepfm:WideDeep", "Wide & Deep over ID and feature fields, BCE (Cheng et al. 2016)."),
}


def register(name: str, target: str, summary: str = "") -> None:
    """Register a model class under `name` as an import target ``"package.module:Class"``."""
    if ":" not in target:
        raise ConfigError(f"register({name!r}): target must look like 'module:Class'")
    _REGISTRY[name] = (target, summary)


def available_models() -> dict[str, str]:
    """Registered names → one-line summaries, without importing any model."""
    return {name: summary for name, (_, summary) in sorted(_REGISTRY.items())}


def get_model_class(name: str) -> type[Recommender]:
    """The class registered as `name` (imported on first use)."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown model {name!r} (known: {known})")
    module_name, _, cls_name = _REGISTRY[name][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, cls_name)


def create_model(name: str, config: dict[str, Any] | None = None, **overrides: Any) -> Recommender:
    """Instantiate a registered model from a config dict plus keyword overrides."""
    return get_model_class(name)(config, **overrides)


def load_model(path: str | Path) -> Recommender:
    """Load any saved recforge artifact directory, whatever its model class."""
    from recforge.models.base import Recommender

    return Recommender.load(path)
