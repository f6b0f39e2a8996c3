"""``--engine ray``: corpus encoding as Ray Data ``map_batches`` over an actor pool, search as Ray tasks.

Encoding. The corpus is cut into the blocks of :func:`harness.cache.encode_in_blocks` (texts
longest first, ``block_size`` per block, the same cache keys). Blocks already in the cache are
skipped; the others become the rows of a Ray Dataset (one row per block: its number and its texts,
or only its number when the actors read the texts themselves from a :class:`TextSource`), mapped
by ``map_batches`` over an :class:`ray.data.ActorPoolStrategy` pool of ``workers`` actors. Each
actor unpickles the encoder once, encodes a block per call and writes it to the cache as an atomic
file, exactly as the local engine would. The driver then assembles the blocks with
:func:`harness.cache.encode_in_blocks` (every block now a cache hit). A killed run leaves its
finished blocks, and the next run, local or Ray, encodes only the rest. With several machines the
cache folder must be one shared file system (``--cache-dir``), since actors write it.

Numerics: an actor has one CPU, so torch runs one intra-op thread in it (Ray sets
``OMP_NUM_THREADS`` to the actor's CPUs). Narrow encoders (pico, ColBERT pico) compute every batch
on one thread in the local engine too, so their vectors are bit-identical; wide ones (MiniLM) use
all intra-op threads locally, so their float32 sums may round differently (documented in the README).

Search. Dense and FDE vectors are cut into one shard per worker (more under ``--max-memory``),
each searched by a task that returns its top-k with global indices, merged with the tie rule
(:mod:`harness.retrieval.sharded`). Full maxsim is sharded the same way over token matrices.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from harness.cache import (VectorCache, as_float32, block_key_parts, block_order, cache_key, encode_in_blocks,
                           whole_key_parts)
from harness.engine.device import device_provenance
from harness.errors import HarnessError

BLOCK_SIZE = 1024  # texts per cache block, as harness.cache.encode_in_blocks


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise HarnessError("--engine ray needs Ray Data: pip install 'ray[data]' (constraints.txt pins the version)") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in one line when ``host:port`` (or ``ray://host:port``) does not accept a TCP connection;
    Ray itself would retry for about a minute before raising."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise HarnessError(f"--ray-address {address}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise HarnessError(f"--ray-address {address}: cannot reach a Ray cluster there ({exc.strerror or exc})") from None


class TextSource:
    """Texts an encoder actor reads itself (instead of receiving them in the dataset rows):
    ``texts(indices)`` returns the texts at those corpus positions. See :mod:`harness.engine.store`."""

    def texts(self, indices: np.ndarray) -> list[str]:
        raise NotImplementedError


class _BlockEncoder:
    """Ray Data callable class: one per actor; loads (unpickles) the encoder once, encodes blocks."""

    def __init__(self, encode, cache_root: str, whole_parts: dict, block_size: int, source=None, order=None,
                 device: str = "cpu"):
        logging.getLogger("transformers").setLevel(logging.ERROR)
        self.encode = encode
        self.cache = VectorCache(Path(cache_root))
        self.whole_parts = whole_parts
        self.block_size = block_size
        self.source = source
        self.order = order
        self.device = device

    def __call__(self, batch: dict) -> dict:
        done = []
        for row, block in enumerate(batch["block"]):
            block = int(block)
            if "texts" in batch:
                texts = [str(t) for t in batch["texts"][row]]
            else:
                texts = self.source.texts(self.order[block * self.block_size : (block + 1) * self.block_size])
            value = as_float32(self.encode(texts))
            self.cache.save(cache_key(block_key_parts(self.whole_parts, block, self.block_size)), value)
            done.append(len(texts))
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"block": np.asarray(batch["block"], dtype=np.int64), "texts": np.asarray(done, dtype=np.int64),
                "pid": np.full(len(done), os.getpid(), dtype=np.int64), "peak_rss_mb": np.full(len(done), peak)}


class RayEngine:
    """Runs encoding and search on a Ray cluster: a local one started for the run (``address``
    None, ``num_cpus`` CPUs, default this machine's) or an existing one (``address``)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, device: str = "cpu",
                 max_memory_bytes: int | None = None, num_cpus: int | None = None):
        self.address = address
        self.requested_workers = workers
        self.device = device
        self.max_memory_bytes = max_memory_bytes
        self.num_cpus = num_cpus
        self.workers = 0
        self._started = False
        self.actor_peak_rss_mb: dict[int, float] = {}  # encoder actor pid -> its peak RSS, MiB

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        ray = _ray()
        if self.requested_workers is not None and self.requested_workers < 1:
            raise HarnessError("--ray-workers must be at least 1")
        if not ray.is_initialized():
            if self.address:
                _check_reachable(self.address)
            # Workers of a local runtime inherit this environment: make `harness` importable there.
            root = str(Path(__file__).resolve().parents[2])
            previous = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, previous) if p)
            try:
                kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                              configure_logging=True)
                if self.address:
                    ray.init(address=self.address, **kwargs)
                else:
                    from harness.models.runtime import cpu_threads

                    # A new local runtime gets Ray's default, token authentication, and Ray warns
                    # that it chose it; the harness keeps the default and drops the warning.
                    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
                    level = notice.level
                    notice.setLevel(logging.ERROR)
                    try:
                        ray.init(num_cpus=self.num_cpus or cpu_threads(), **kwargs)
                    finally:
                        notice.setLevel(level)
            except HarnessError:
                raise
            except Exception as exc:
                where = self.address or "a local runtime"
                reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise HarnessError(f"--engine ray: cannot start Ray on {where}: {reason}") from None
            finally:
                if previous is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = previous
            self._started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        unit = "GPU" if self.device == "cuda" else "CPU"
        available = int(resources.get(unit, 0))
        if not available:
            raise HarnessError(f"--engine ray --device {self.device}: the Ray cluster has no {unit}")
        self.workers = min(self.requested_workers or available, available)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def provenance(self) -> dict:
        import ray

        return {"engine": self.name, **device_provenance(self.device), "ray": ray.__version__,
                "ray_address": self.address or "local", "workers": self.workers}

    # ------------------------------------------------------------------ encoding

    def _actor_options(self, n_blocks: int) -> dict:
        """Ray Data options of the encoder pool: ``workers`` actors, fewer when fewer blocks are
        missing (Ray warns about a pool larger than its inputs)."""
        import ray

        gpu = self.device == "cuda"
        return dict(compute=ray.data.ActorPoolStrategy(size=max(1, min(self.workers, n_blocks))), batch_size=1,
                    num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, batch_format="numpy")

    def encode_blocks(self, n_texts: int, lengths, encode, cache: VectorCache, parts: dict,
                      block_texts=None, source: TextSource | None = None, block_size: int = BLOCK_SIZE) -> dict:
        """Write every missing cache block of a corpus of ``n_texts`` texts (``lengths``: their
        lengths in characters, which fix the blocks) with the actor pool. The texts travel in the
        rows (``block_texts(order_slice)`` gives a block's texts) or are read by the actors from
        ``source``. Returns ``{"blocks", "blocks_cached", "order"}``."""
        ray = _ray()
        whole = whole_key_parts(parts, n_texts)
        n_blocks = (n_texts + block_size - 1) // block_size
        if cache.has(cache_key(whole)):
            return {"blocks": n_blocks, "blocks_cached": n_blocks, "order": None}
        order = np.asarray(block_order(lengths), dtype=np.int64)
        missing = [b for b in range(n_blocks) if not cache.has(cache_key(block_key_parts(whole, b, block_size)))]
        if missing:
            if source is None:
                rows = [{"block": b, "texts": block_texts(order[b * block_size : (b + 1) * block_size])} for b in missing]
                order_arg = None
            else:
                rows = [{"block": b} for b in missing]
                order_arg = order
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
            mapped = dataset.map_batches(
                _BlockEncoder,
                fn_constructor_kwargs=dict(encode=encode, cache_root=str(cache.root), whole_parts=whole,
                                           block_size=block_size, source=source, order=order_arg, device=self.device),
                **self._actor_options(len(missing)),
            )
            from tqdm.auto import tqdm

            with tqdm(total=sum(min(block_size, n_texts - b * block_size) for b in missing), desc="ray encode",
                      unit="text", leave=False) as bar:
                for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                    bar.update(int(np.sum(batch["texts"])))
                    for pid, peak in zip(batch["pid"].tolist(), batch["peak_rss_mb"].tolist()):
                        self.actor_peak_rss_mb[pid] = max(peak, self.actor_peak_rss_mb.get(pid, 0.0))
        return {"blocks": n_blocks, "blocks_cached": n_blocks - len(missing), "order": order}

    def encode_in_blocks(self, texts, encode, cache: VectorCache, parts: dict, desc: str = "encode",
                         block_size: int = BLOCK_SIZE):
        """Same result and cache entries as :func:`harness.cache.encode_in_blocks`, blocks encoded by actors."""
        texts = list(texts)
        scratch = None
        if not cache.enabled:  # --no-cache: the actors still hand blocks over through files
            scratch = tempfile.TemporaryDirectory(prefix="harness-ray-blocks-")
            cache = VectorCache(Path(scratch.name))
        try:
            info = self.encode_blocks(len(texts), [len(t) for t in texts], encode, cache, parts,
                                      block_texts=lambda idx: [texts[i] for i in idx], block_size=block_size)
            vectors, _ = encode_in_blocks(texts, encode, cache, parts, block_size=block_size, desc=desc)
        finally:
            if scratch is not None:
                scratch.cleanup()
        return vectors, {"blocks": info["blocks"], "blocks_cached": info["blocks_cached"]}

    # ------------------------------------------------------------------ search

    def _shards(self, n_rows: int, row_bytes: int) -> list[tuple[int, int]]:
        from harness.retrieval import sharded

        n = self.workers
        if self.max_memory_bytes and row_bytes:  # each task holds one shard: keep it under the budget
            n = max(n, -(-n_rows * row_bytes // max(1, self.max_memory_bytes // 2)))
        return sharded.shard_bounds(n_rows, n)

    def search(self, queries: np.ndarray, docs, k: int, ranks: np.ndarray):
        ray = _ray()
        from harness.retrieval import sharded

        if len(docs) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        task = ray.remote(num_cpus=1)(_search_part)
        q, r = ray.put(np.ascontiguousarray(queries, dtype=np.float32)), ray.put(ranks)
        on_disk = isinstance(docs, np.memmap) and docs.filename is not None
        rows = sharded.chunk_rows(docs.shape[1], len(queries), k, self.max_memory_bytes)  # per task, under the budget
        futures = [task.remote(q, str(docs.filename) if on_disk else ray.put(np.ascontiguousarray(docs[a:b])), a, b, k, r,
                               rows)
                   for a, b in self._shards(len(docs), 4 * docs.shape[1])]
        return sharded.merge(ray.get(futures), k, ranks)

    def maxsim_search(self, query_tokens, doc_tokens, k: int, memory: int, ranks: np.ndarray):
        ray = _ray()
        from harness.retrieval import sharded

        n = len(doc_tokens)
        if n == 0 or not len(query_tokens):
            return sharded.maxsim_shard(query_tokens, doc_tokens, 0, n, k, memory, ranks)
        task = ray.remote(num_cpus=1)(_maxsim_part)
        q, r = ray.put(list(query_tokens)), ray.put(ranks)
        futures = [task.remote(q, ray.put([doc_tokens[i] for i in range(a, b)]), a, b, k, memory, r)
                   for a, b in sharded.shard_bounds(n, self.workers)]
        return sharded.merge(ray.get(futures), k, ranks)

    def rerank(self, query_tokens, doc_tokens, candidates: np.ndarray) -> np.ndarray:
        """Queries in one chunk per worker; each task receives only the token matrices of its
        queries' candidates (renumbered), so no task holds the corpus."""
        ray = _ray()
        from harness.retrieval import maxsim

        candidates = np.asarray(candidates, dtype=np.int64)
        bounds = _bounds(len(candidates), self.workers)
        task = ray.remote(num_cpus=1)(maxsim.rerank)
        futures = []
        for a, b in bounds:
            chunk = candidates[a:b]
            used = np.unique(chunk[chunk >= 0])
            renumbered = np.where(chunk >= 0, np.searchsorted(used, chunk), -1)
            futures.append(task.remote([query_tokens[i] for i in range(a, b)], [doc_tokens[i] for i in used], renumbered))
        parts = ray.get(futures)
        return np.concatenate(parts) if parts else np.zeros(candidates.shape, np.float32)


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
    from harness.retrieval import sharded

    return sharded.shard_bounds(n, parts) if n else []


def _search_part(queries: np.ndarray, docs, start: int, stop: int, k: int, ranks: np.ndarray,
                 rows: int | None = None):
    """Ray task: top-k over rows ``start..stop-1``; ``docs`` is those rows, or the path of a ``.npy``
    file holding every row (read through a memory map: only the shard is paged in). ``rows``: search
    the shard in chunks of that many documents (``--max-memory``), so a task's working set does not
    grow with its shard."""
    from harness.retrieval import exact, sharded

    if isinstance(docs, str):
        docs = np.load(docs, mmap_mode="r")[start:stop]
    if rows:
        scores, indices = sharded.search_chunked(queries, docs, k, ranks[start:stop], rows)
    else:
        scores, indices = exact.search(queries, np.ascontiguousarray(docs, dtype=np.float32), k, ranks[start:stop])
    return scores, indices + start


def _maxsim_part(query_tokens, doc_tokens, start: int, stop: int, k: int, memory: int, ranks: np.ndarray):
    """Ray task: full maxsim top-k over documents ``start..stop-1`` (``doc_tokens``: their matrices)."""
    from harness.retrieval import sharded

    scores, indices = sharded.maxsim_shard(query_tokens, doc_tokens, 0, stop - start, k, memory, ranks[start:stop])
    return scores, indices + start
