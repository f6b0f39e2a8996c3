"""BM25, the classic floor, via ``bm25s`` (Lucene's BM25 variant).

Settings (recorded in every result): k1=1.2, b=0.75, Lucene IDF; tokenizer = bm25s' default
regex ``(?u)\\b\\w\\w+\\b`` on lower-cased text, bm25s' English stopword list, and the Snowball
English stemmer from PyStemmer. Documents are ``title + " " + text`` like every other method.
Documents that share no term with a query score 0 and are not retrieved (as with Lucene), so a
query may return fewer than k documents. The top k per query is cut with the harness's tie rule
(:mod:`harness.retrieval.exact`), not bm25s' own top-k.
"""

from __future__ import annotations

import bm25s
import numpy as np
import Stemmer
from tqdm.auto import tqdm

from harness.errors import HarnessError
from harness.retrieval.exact import top_k

SETTINGS = {
    "k1": 1.2,
    "b": 0.75,
    "method": "lucene",
    "tokenizer": "bm25s regex (?u)\\b\\w\\w+\\b, lower-cased",
    "stopwords": "bm25s english",
    "stemmer": "PyStemmer english (Snowball)",
}


class BM25:
    """Index a corpus once, then search query texts exactly (every document scored)."""

    def __init__(self, doc_texts: list[str]):
        self._stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(doc_texts, stopwords="en", stemmer=self._stemmer, show_progress=False)
        if not any(len(ids) for ids in tokens.ids):
            raise HarnessError("BM25: no document has an indexable term (every word is a stopword or too short)")
        self._retriever = bm25s.BM25(k1=SETTINGS["k1"], b=SETTINGS["b"], method=SETTINGS["method"])
        self._retriever.index(tokens, show_progress=False)
        self.n_docs = len(doc_texts)

    def scores(self, queries: list[str]) -> np.ndarray:
        """(n_queries, n_docs) float32 BM25 scores of every document; 0 = no shared term."""
        tokenized = bm25s.tokenize(
            queries, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False
        )
        scores = np.empty((len(queries), self.n_docs), dtype=np.float32)
        for row, query_tokens in enumerate(tqdm(tokenized, desc="bm25 scores", unit="query", leave=False)):
            scores[row] = self._retriever.get_scores(query_tokens) if query_tokens else 0.0
        return scores

    def search(self, queries: list[str], k: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n_queries, min(k, n_docs)) scores and doc indices, best first; ``-inf`` = not retrieved."""
        scores = self.scores(queries)
        scores[scores <= 0] = -np.inf
        return top_k(scores, k, ranks)
