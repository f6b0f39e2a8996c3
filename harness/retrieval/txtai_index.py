"""``--index txtai``: the same vectors indexed and searched by txtai's ``Embeddings``.

Configured for exact search: the ``numpy`` ANN backend scores every document (txtai's default
Faiss backend switches to an approximate IVF index above 5,000 rows). Vectors are passed in with
``method: external``, so txtai sees exactly what the built-in path sees; txtai L2-normalises the
indexed vectors, which leaves already-normalised (cosine) vectors as they are. The top k returned
by txtai are re-sorted with the harness's tie rule.
"""

from __future__ import annotations

import numpy as np

CONFIG = {"method": "external", "backend": "numpy", "content": False}


def search(queries: np.ndarray, docs: np.ndarray, k: int, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_queries, min(k, n_docs)) scores and doc indices from a txtai index, best first."""
    from txtai import Embeddings

    embeddings = Embeddings(dict(CONFIG))
    embeddings.index((i, vector, None) for i, vector in enumerate(docs))
    k = min(k, len(docs))
    hits = embeddings.batchsearch(np.asarray(queries, dtype=np.float32), limit=k)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    indices = np.zeros((len(queries), k), dtype=np.int64)
    for row, found in enumerate(hits):
        for col, (doc_index, score) in enumerate(found):
            indices[row, col], scores[row, col] = int(doc_index), score
    order = np.lexsort((ranks[indices], -scores), axis=-1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)
