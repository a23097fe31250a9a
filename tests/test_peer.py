"""The peer benchmark's lightweight-gan side (benchmarks/peer_lightweight_gan.py): its CPU
patches still match the installed tool, it trains with the tool's own command-line defaults,
and what it writes imports into gantool. Needs the peer's environment (benchmarks/peer.py's
docstring says how to make it); skipped without it."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import gantool_cli

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
PEER_PYTHON = BENCH / ".peer-venv" / "bin" / "python"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(  # a benchmark's chain: make test-fast skips it
    not PEER_PYTHON.is_file(),
    reason="needs lightweight-gan's own environment at benchmarks/.peer-venv (see "
           "benchmarks/peer.py)")]


def test_the_peer_runs_on_the_cpu_with_its_cli_defaults():
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import peer_lightweight_gan as p; "
            "p.import_on_cpu(); import json; print(json.dumps(p.cli_model_args()))")
    out = subprocess.run([str(PEER_PYTHON), "-c", code], capture_output=True, text=True,
                         check=True).stdout
    args = json.loads(out.splitlines()[-1])
    # its command line's defaults, not its Trainer's (attention [], batch 4, disc output 5)
    assert args["attn_res_layers"] == [32] and args["batch_size"] == 10
    assert args["gradient_accumulate_every"] == 4 and args["disc_output_size"] == 1
    assert args["lr"] == 2e-4 and args["aug_types"] == ["cutout", "translation"]


def test_one_step_of_the_peer_imports_into_gantool(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(data / f"{i}.png")
    subprocess.run([str(PEER_PYTHON), str(BENCH / "peer_lightweight_gan.py"), "--data",
                    str(data), "--out", str(tmp_path / "peer"), "--minutes", "0.001",
                    "--image-size", "32", "--batch-size", "4", "--accumulate", "1",
                    "--set", "fmap_max=16", "--set", "attn_res_layers=[]"],
                   check=True, capture_output=True, timeout=600)
    record = json.loads((tmp_path / "peer" / "peer.json").read_text())
    assert record["steps"] >= 1 and record["images_seen"] == record["steps"] * 4
    for key in ("checkpoint", "checkpoint_g"):
        r = gantool_cli("import", record[key], "--out", tmp_path / f"{key}.pt")
        assert r.returncode == 0, r.stderr
    # G.pt holds G in GE's place: after a step the two generators differ
    r = [gantool_cli("generate", tmp_path / f"{key}.pt", "--seeds", "0", "--out",
                     tmp_path / key) for key in ("checkpoint", "checkpoint_g")]
    assert all(x.returncode == 0 for x in r)
    a, b = (np.asarray(Image.open(tmp_path / k / "seed000000.png"))
            for k in ("checkpoint", "checkpoint_g"))
    assert a.shape == (32, 32, 3) and not np.array_equal(a, b)
