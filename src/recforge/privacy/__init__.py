"""Privacy tools: DP-SGD training of torch models (`recforge.privacy.dp`, needs Opacus) and
differentially private counts (`recforge.privacy.report`)."""

from recforge.privacy.report import PrivacyReport, laplace_counts, privacy_meta

__all__ = ["PrivacyReport", "laplace_counts", "privacy_meta"]
