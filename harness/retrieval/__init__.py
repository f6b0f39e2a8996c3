"""Retrieval: exact dense search, BM25, late-interaction (maxsim) scoring."""
