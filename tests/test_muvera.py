"""MUVERA FDE: txtai parity, determinism, the paper's empty-partition filling, Chamfer tracking."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from txtai.models import Muvera

from harness.errors import HarnessError
from harness.models.muvera import FDE, FDEConfig, partition_table


def random_sets(seed, n=40, dim=80, max_tokens=50):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(rng.integers(1, max_tokens), dim)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("projection", [16, None])
@pytest.mark.parametrize("side", ["query", "data"])
def test_txtai_parity(projection, side):
    data = random_sets(0)
    expected = Muvera(repetitions=20, hashes=5, projection=projection, seed=42)(data, side)
    fde = FDE(FDEConfig(projection=projection), token_dim=80)
    got = fde.encode_queries(data) if side == "query" else fde.encode_documents(data)
    assert got.dtype == np.float32 and got.shape == expected.shape == (40, fde.dims)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_txtai_parity_other_parameters():
    data = random_sets(1, dim=32)
    expected = Muvera(repetitions=3, hashes=3, projection=8, seed=7)(data, "data")
    got = FDE(FDEConfig(repetitions=3, hashes=3, projection=8, seed=7), token_dim=32).encode_documents(data)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("documents", [False, True])
def test_encode_points_is_the_fde_and_differentiable(documents):
    data = random_sets(2, n=6)
    fde = FDE(FDEConfig(), token_dim=80)
    points = torch.from_numpy(np.concatenate(data)).requires_grad_(True)
    lengths = np.array([len(t) for t in data])
    got = fde.encode_points(points, lengths, documents)
    expected = fde.encode_documents(data) if documents else fde.encode_queries(data)
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-6)
    # For fixed partitions the FDE is linear in the tokens: the gradient of <w, FDE> matches a finite
    # difference along a direction (scaling the tokens keeps every SimHash bit, so no partition moves).
    w = torch.randn(got.shape)
    (got * w).sum().backward()
    direction = torch.from_numpy(np.concatenate(data))
    with torch.no_grad():
        moved = fde.encode_points(points * 1.001, lengths, documents)
        finite = float(((moved - got) * w).sum() / 0.001)
    assert abs(float((points.grad * direction).sum()) - finite) < 1e-3 * max(1.0, abs(finite))


def test_dims_and_provenance():
    assert FDEConfig().dims(80) == 20 * 32 * 16 == 10_240
    assert FDEConfig(projection=None).dims(80) == 20 * 32 * 80
    assert FDEConfig(mode="paper", final_projection=1024).dims(80) == 1024
    assert FDEConfig().to_dict() == {
        "repetitions": 20, "hashes": 5, "projection": 16, "seed": 42, "mode": "txtai",
        "fill_empty": False, "final_projection": None,
    }
    with pytest.raises(HarnessError):
        FDEConfig(fill_empty=True)  # txtai mode has no filling
    with pytest.raises(HarnessError):
        FDEConfig(mode="other")
    with pytest.raises(HarnessError, match="expected shape"):
        FDE(FDEConfig(), 80).encode_documents([np.zeros((3, 16), np.float32)])


def test_seeded_determinism():
    data = random_sets(2)
    for config in (FDEConfig(), FDEConfig(mode="paper", fill_empty=True, final_projection=512)):
        a = FDE(config, 80).encode_documents(data)
        b = FDE(config, 80).encode_documents(data)
        np.testing.assert_array_equal(a, b)
        other = FDE(FDEConfig(**{**config.to_dict(), "seed": 43}), 80).encode_documents(data)
        assert not np.allclose(a, other)
    # Batch composition does not change a text's encoding.
    fde = FDE(FDEConfig(), 80)
    np.testing.assert_array_equal(fde.encode_queries(data)[5:6], fde.encode_queries(data[5:6]))


def test_partition_table_is_txtai_fold():
    table = partition_table(3)
    assert sorted(table) == list(range(8))
    # bits 0b010: index 0 -> (0<<1)+(1^0)=1 -> (1<<1)+(0^1)=3
    assert table[0b010] == 3


def test_fill_empty_uses_hamming_nearest_token():
    config = FDEConfig(repetitions=4, hashes=4, projection=8, mode="paper", fill_empty=True)
    data = random_sets(3, n=12, dim=24, max_tokens=6) + [np.zeros((0, 24), np.float32)]
    filled = FDE(config, 24).encode_documents(data).reshape(len(data), 4, 16, 8)
    plain = FDE(FDEConfig(**{**config.to_dict(), "fill_empty": False}), 24).encode_documents(data).reshape(filled.shape)
    assert not np.any(np.all(filled[:-1] == 0, axis=-1)), "a non-empty document kept an all-zero block"
    assert np.all(filled[-1] == 0), "a document without tokens must stay zero"

    # Brute force: the document's token with the nearest SimHash bits (earliest on ties).
    table = partition_table(4)
    code_of = {int(p): c for c, p in enumerate(table)}
    for r in range(4):
        rng = np.random.default_rng(42 + r)
        planes = rng.normal(0.0, 1.0, size=(24, 4)).astype(np.float32)
        rng = np.random.default_rng(42 + r)
        sketch = np.zeros((24, 8), np.float32)
        columns = rng.integers(0, 8, size=24)  # drawn before the signs, as txtai does
        sketch[np.arange(24), columns] = rng.choice([-1.0, 1.0], size=24)
        sketch /= np.sqrt(8)
        for i, tokens in enumerate(data[:-1]):
            codes = [int("".join("1" if v > 0 else "0" for v in row), 2) for row in tokens @ planes]
            occupied = {int(table[c]) for c in codes}
            for p in range(16):
                if p in occupied:
                    np.testing.assert_allclose(filled[i, r, p], plain[i, r, p], atol=1e-6)
                    continue
                distances = [bin(c ^ code_of[p]).count("1") for c in codes]
                nearest = int(np.argmin(distances))
                np.testing.assert_allclose(filled[i, r, p], tokens[nearest] @ sketch, atol=1e-5)


def clustered_sets(seed=1, dim=80, centers=16, noise=0.5):
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centers, dim))

    def text(k, n):
        chosen = rng.choice(centers, size=k, replace=False)
        x = middle[rng.choice(chosen, size=n)] + noise * rng.normal(size=(n, dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    docs = [text(rng.integers(1, 9), rng.integers(20, 80)) for _ in range(150)]
    queries = [text(3, 32) for _ in range(15)]
    return queries, docs


@pytest.mark.parametrize(
    "config",
    [FDEConfig(), FDEConfig(mode="paper", fill_empty=True), FDEConfig(mode="paper", fill_empty=True, final_projection=2048)],
    ids=["txtai", "paper", "paper-final"],
)
def test_fde_tracks_chamfer(config):
    queries, docs = clustered_sets()
    chamfer = np.array([[(q @ d.T).max(axis=1).sum() for d in docs] for q in queries])
    fde = FDE(config, 80)
    approx = fde.encode_queries(queries) @ fde.encode_documents(docs).T
    assert spearmanr(chamfer.ravel(), approx.ravel()).statistic >= 0.8
    assert np.mean([spearmanr(c, a).statistic for c, a in zip(chamfer, approx)]) >= 0.8
