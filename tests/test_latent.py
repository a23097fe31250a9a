"""The seed -> z contract, bit for bit."""

import ast
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gantool import latent
from gantool.latent import batched, latents, parse_seeds, validate_truncation


def reference_normal(seed, nz, t):
    """The contract written out independently: redraw every |z| > t from the seed's generator."""
    rng = np.random.Generator(np.random.PCG64(seed))
    z = rng.standard_normal(nz)
    if t is not None:
        while True:
            bad = np.flatnonzero(np.abs(z) > t)
            if bad.size == 0:
                break
            z[bad] = rng.standard_normal(bad.size)
    return z.astype(np.float32)


@pytest.mark.parametrize("t", [None, 2.0, 0.5, 0.1])
def test_normal_matches_reference_bit_for_bit(t):
    z = latents([0, 1, 12345, 2**40], 100, "normal", t)
    for row, seed in zip(z, [0, 1, 12345, 2**40]):
        assert row.tobytes() == reference_normal(seed, 100, t).tobytes()
    if t is not None:
        assert np.abs(z).max() <= t


@pytest.mark.parametrize("t", [None, 1.0, 0.5, 0.4])
def test_uniform_is_narrowed_interval(t):
    z = latents(range(50), 64, "uniform", t)
    bound = 1.0 if t is None else t
    assert np.abs(z).max() <= bound and np.abs(z).max() > 0.9 * bound
    rng = np.random.Generator(np.random.PCG64(7))
    assert z[7].tobytes() == rng.uniform(-bound, bound, 64).astype(np.float32).tobytes()


def test_golden_values_pin_the_stream():
    # Every backend (torch, ONNX, TensorRT, Triton) must draw exactly these for seed 0.
    z = latents([0], 4, "normal", None)[0]
    np.testing.assert_allclose(z, [0.12573022, -0.13210486, 0.64042264, 0.10490011], rtol=1e-6)
    assert z.tobytes().hex() == "6cbf003e7f4607bebdf2233fdfd5d63d"
    u = latents([0], 4, "uniform", 0.5)[0]
    assert u.tobytes().hex() == "af3f0c3e08bd6bbe8505ebbeb189f7be"


# z bytes (nz=8) of seeds 0, 7 and 2**40 as gantool drew them before the truncation minimum:
# bounding the redraws must not change any image already rendered at an accepted truncation.
TRUNCATED_GOLDEN = {
    0.5: ["6cbf003e7f4607be18f2a1bedfd5d63dec0a60befd22b93e3dc1d23e6e45293d",
          "193da13a2df5983ecc5b8cbe7e02fcbe9ccae8bee5b9b63e2359763d94ccfa3e",
          "e4a1ad3ee0d380bd029021be81b88d3e508de2be4804efbec45ff3bd0036903c"],
    0.01: ["638721bc9df2683a1a2f113c94b6a3bbfaf391bb89f0103baf8bc0bb454decbb",
           "193da13ae266023cf906b6bbcceeb0bbc71df1bb6ff904bb04e9653bd23791bb",
           "eeb0aa3b861a7abb453aa13ba220d4ba4e931b3cd606a6bb74ebd03b6ec4c93b"],
}


@pytest.mark.parametrize("t", sorted(TRUNCATED_GOLDEN))
def test_truncated_golden_values(t):
    z = latents([0, 7, 2**40], 8, "normal", t)
    assert [row.tobytes().hex() for row in z] == TRUNCATED_GOLDEN[t]


@pytest.mark.parametrize("t", [1e-9, 1e-4, latent.MIN_NORMAL_TRUNCATION * 0.99])
def test_tiny_normal_truncation_is_refused_at_once(t):
    """Redraws cost ~1/t per value: below the minimum a request would stall whoever serves it."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match="minimum 0.01"):
        latents([0, 1, 2, 3], 512, "normal", t)
    assert time.perf_counter() - start < 1.0
    latents([0], 4, "uniform", t)  # no redraws there: any t in (0, 1]


def test_row_depends_on_its_seed_only():
    batch = latents([9, 3, 7, 3], 32, "normal", 0.7)
    for i, seed in enumerate([9, 3, 7, 3]):
        np.testing.assert_array_equal(batch[i], latents([seed], 32, "normal", 0.7)[0])
    assert batch.dtype == np.float32 and batch.shape == (4, 32)


@pytest.mark.parametrize("t,prior", [(-0.5, "normal"), (0.0, "uniform"), (1.5, "uniform"),
                                     (float("nan"), "normal"), (0.5, "gaussian")])
def test_bad_truncation_or_prior(t, prior):
    with pytest.raises(ValueError):
        validate_truncation(t, prior)


def test_parse_seeds():
    assert list(parse_seeds("0-3,10")) == [0, 1, 2, 3, 10]
    assert list(parse_seeds(" 5 ")) == [5]
    for bad in ["5-2", "a", "-1", "", "1,,2", "1-b", ",".join(["1"] * 10_001),
                f"0-{latent.MAX_SEED}"]:
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_seed_lists_are_lazy():
    """A hundred billion seeds cost a few bytes until they are drawn, in order, in chunks."""
    tracemalloc.start()
    seeds = parse_seeds("0-99999999999,7,3-4")
    chunks = batched(seeds, 5)
    first = next(chunks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000
    assert len(seeds) == 10**11 + 3 and first == [0, 1, 2, 3, 4]
    assert seeds[-3:] == [7, 3, 4] and seeds[10**11] == 7 and seeds[-1] == 4
    assert 99_999_999_999 in seeds and 10**11 not in seeds and seeds.count(3) == 2
    assert list(batched(parse_seeds("0-6"), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_latent_module_is_standalone():
    """latent.py ships next to the Triton python model: numpy and the standard library only."""
    tree = ast.parse(Path(latent.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"numpy", "collections", "itertools", "__future__"}, names


def test_stylegan_prior_is_nvidias_randomstate_draw():
    """z as NVIDIA's gen_images.py draws it, whatever the truncation (psi is the network's)."""
    seeds = [0, 85, 2**32 - 1]
    want = np.stack([np.random.RandomState(s).randn(512) for s in seeds]).astype(np.float32)
    for psi in (None, 0.7, -0.5, 0.0, 2.0):
        assert np.array_equal(latents(seeds, 512, "stylegan", psi), want)
    np.testing.assert_array_equal(latent.truncation_input(0.7, "stylegan", 3),
                                  np.full((3, 1), 0.7, np.float32))
    assert latent.truncation_input(None, "stylegan", 2).tolist() == [[1.0], [1.0]]
    assert latent.truncation_input(0.7, "normal", 2) is None
    assert latent.plain_truncation("stylegan") == 1.0
    with pytest.raises(ValueError, match="largest seed of the stylegan prior"):
        latents([2**32], 4, "stylegan")
    with pytest.raises(ValueError, match="psi must be a finite number"):
        validate_truncation(float("nan"), "stylegan")
