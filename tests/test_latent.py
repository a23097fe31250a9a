"""The seed -> z contract, bit for bit."""

import ast
from pathlib import Path

import numpy as np
import pytest

from gantool.sampling import latent
from gantool.sampling.latent import latents, parse_seeds, validate_truncation


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
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds(" 5 ") == [5]
    for bad in ["5-2", "a", "-1", "", "1,,2", "1-b"]:
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_latent_module_is_standalone():
    """latent.py ships next to the Triton python model: numpy and the standard library only."""
    tree = ast.parse(Path(latent.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"numpy", "collections", "__future__"}, names
