"""harness: a BEIR benchmark harness for tiny embedding models.

Pipeline, one module each: data (BEIR loading) -> models (encoders) -> retrieval (exact search, BM25,
maxsim) -> evaluate (pytrec_eval) -> results (provenance, atomic JSON) -> table / regression (reports).
"""

__version__ = "0.1.0"

# Nothing heavy is imported here, so `python -m harness --help` starts without torch/transformers.
# `import harness.models.berthash` registers the bert_hash model type with transformers' Auto
# classes; every harness loader that needs it imports it first.
