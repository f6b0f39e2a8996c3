"""harness: a BEIR benchmark harness for tiny embedding models.

Pipeline, one module each: data (BEIR loading) -> models (encoders) -> retrieval (exact search, BM25,
maxsim) -> evaluate (pytrec_eval) -> results (provenance, atomic JSON) -> table / regression (reports).
"""

__version__ = "0.1.0"

from harness.models import berthash as _berthash  # noqa: E402,F401  (registers bert_hash with transformers' Auto classes)
