"""harness: a BEIR benchmark harness for tiny embedding models.

Pipeline, one module each: data (BEIR loading) -> models (encoders) -> retrieval (exact search, BM25,
maxsim) -> evaluate (pytrec_eval) -> results (provenance, atomic JSON) -> table / regression (reports).
"""

__version__ = "0.1.0"
