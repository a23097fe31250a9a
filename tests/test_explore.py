"""gantool explore: the page's answers equal gantool generate's and video's bytes, bad values
are one-line errors that leave the server serving, and a real browser (headless Chromium driven
by Playwright) uses the page as a person would."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gantool.errors import GantoolError

from conftest import cli_in_process, explore_server, gantool_cli, tiny_config

pytest.importorskip("starlette", reason="the explore extra (starlette, uvicorn) is not installed")


def _explorer(path, backend="torch"):
    from gantool.backends import load_backend
    from gantool.cli.explore import Commands
    from gantool.explore.session import Explorer

    gen = load_backend(backend, str(path))
    return Explorer(gen, "tiny", backend, "cpu",
                    Commands(f"gantool generate {path} --backend {backend}",
                             f"gantool video {path} --backend {backend}"))


def _generated(tmp_path: Path, *args) -> Path:
    out = tmp_path / "generated"
    assert cli_in_process("generate", *args, "--out", out, "--no-progress") == 0
    return out


@pytest.mark.parametrize("truncation", ["0.5", "none"])
def test_page_images_are_the_bytes_generate_writes(tiny_ckpt, tmp_path, truncation):
    explorer = _explorer(tiny_ckpt)
    q = {"start": "10", "count": "4", "truncation": truncation}
    page = explorer.grid(q)
    assert page["seeds"] == [10, 11, 12, 13] and page["drawn"] == 4 and page["ms_per_image"] > 0
    assert explorer.grid(q)["drawn"] == 0, "a page asked again comes from the cache"
    images = {s: explorer.image({"seed": str(s), "truncation": truncation}) for s in (10, 13)}
    command = page["commands"]["13"].split()
    assert command[:2] == ["gantool", "generate"] and command[-2:] == ["--out", "explore/"]
    out = _generated(tmp_path, tiny_ckpt, *command[3:-2])  # the page's own command
    assert (out / "seed000013.png").read_bytes() == images[13]
    assert images[10] != images[13]


def test_none_is_the_plain_prior_of_a_model_with_a_default_truncation(tmp_path):
    """A model trained with a default truncation: the page starts there, and its "none" is the
    plain prior, which the page's command asks of gantool generate as --truncation none."""
    from gantool.train.loop import run

    cfg = tiny_config(**{"train.steps": 2, "train.checkpoint_every": 2, "model.truncation": 0.5})
    ckpt = run(cfg, out=tmp_path / "runs", progress=False).run_dir / "checkpoints" / "last.pt"
    explorer = _explorer(ckpt)
    default = explorer.grid({"start": "0", "count": "2"})
    assert default["truncation"] == 0.5 and "--truncation" not in default["commands"]["1"]
    plain = explorer.grid({"start": "0", "count": "2", "truncation": "none"})
    assert plain["truncation"] is None and "--truncation none" in plain["commands"]["1"]
    image = explorer.image({"seed": "1", "truncation": "none"})
    assert image != explorer.image({"seed": "1"})
    out = _generated(tmp_path, ckpt, *plain["commands"]["1"].split()[3:-2])
    assert (out / "seed000001.png").read_bytes() == image


def test_walk_frames_are_the_bytes_video_writes(tiny_ckpt, tmp_path):
    explorer = _explorer(tiny_ckpt)
    walk = explorer.walk({"seeds": "3, 8", "frames_per_seed": "3", "truncation": "0.7"})
    assert walk["frames"] == 6 and walk["command"].endswith("--frames-dir walk/")
    frames = [explorer.frame({"seeds": "3,8", "frames_per_seed": "3", "truncation": "0.7",
                              "frame": str(i)}) for i in range(6)]
    args = walk["command"].split()[2:-2]
    assert cli_in_process("video", *args, "--frames-dir", tmp_path / "walk", "--no-progress") == 0
    assert [(tmp_path / "walk" / f"frame{i:06d}.png").read_bytes() for i in range(6)] == frames
    first = explorer.image({"seed": "3", "truncation": "0.7"})
    assert frames[0] == first, "a walk starts on its first seed's own image"


@pytest.mark.parametrize("method, query, words", [
    ("grid", {"start": "-1", "count": "4"}, "start: -1 is outside"),
    ("grid", {"start": "abc", "count": "4"}, "start: 'abc' is not a whole number"),
    ("grid", {"start": "0", "count": "65"}, "count: 65 is outside 1..64"),
    ("grid", {"start": str(2**63 - 2), "count": "4"}, "seeds end at"),
    ("grid", {"start": "0", "count": "4", "truncation": "0.001"}, "below the normal prior"),
    ("grid", {"start": "0", "count": "4", "truncation": "inf"}, "truncation must be a positive"),
    ("grid", {"start": "0", "count": "4", "truncation": "x"}, "'x' is not a number"),
    ("grid", {"start": "0", "count": "4", "class": "sandal"}, "not conditional"),
    ("image", {"seed": "1e3"}, "seed: '1e3' is not a whole number"),
    ("walk", {"seeds": "1", "frames_per_seed": "4"}, "2 to 8 seeds"),
    ("walk", {"seeds": ",".join(map(str, range(9))), "frames_per_seed": "4"}, "2 to 8 seeds"),
    ("walk", {"seeds": "1,2", "frames_per_seed": "61"}, "frames_per_seed: 61 is outside"),
    ("walk", {"seeds": "1,/etc/passwd", "frames_per_seed": "2"}, "is not a whole number"),
    ("frame", {"seeds": "1,2", "frames_per_seed": "2", "frame": "4"}, "frame: 4 is outside"),
])
def test_bad_values_are_one_line_errors(tiny_ckpt, method, query, words):
    with pytest.raises(GantoolError) as e:
        getattr(_explorer(tiny_ckpt), method)(query)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_large_images_get_smaller_pages(tiny_ckpt):
    from types import SimpleNamespace

    from gantool.explore.session import MAX_GRID, REQUEST_BYTES, Explorer

    explorer = _explorer(tiny_ckpt)
    assert explorer.max_images == MAX_GRID  # 28 px: a full page
    megapixel = SimpleNamespace(resolution=1024, channels=3)  # the shape a 1024 px model has
    big = Explorer(megapixel, "big", "torch", "cpu", explorer.commands)
    assert big.max_images == REQUEST_BYTES // (1024 * 1024 * 3) < MAX_GRID


def test_a_conditional_model_draws_by_class(tmp_path):
    from gantool.train.loop import run

    cfg = tiny_config(**{"data.class_labels": True, "train.steps": 2,
                         "train.checkpoint_every": 2})
    ckpt = run(cfg, out=tmp_path / "runs", progress=False).run_dir / "checkpoints" / "last.pt"
    explorer = _explorer(ckpt)
    assert len(explorer.info()["classes"]) == 10
    page = explorer.grid({"start": "0", "count": "2", "class": "Sandal"})
    assert page["class"] == 5 and "--class Sandal" in page["commands"]["1"]
    image = explorer.image({"seed": "1", "class": "5"})
    out = _generated(tmp_path, ckpt, "--seeds", "1", "--class", "Sandal")
    assert (out / "seed000001.png").read_bytes() == image
    with pytest.raises(GantoolError, match="draws one class"):
        explorer.walk({"seeds": "1,2", "frames_per_seed": "2"})
    with pytest.raises(GantoolError, match="class: 'boots' is not a class of this model"):
        explorer.grid({"start": "0", "count": "2", "class": "boots"})


# ---- the server ------------------------------------------------------------------------------
def _get(url: str, headers: dict | None = None):
    """(status, content type, body) of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_the_server_answers_refuses_bad_values_and_keeps_serving(tiny_ckpt):
    with explore_server(tiny_ckpt) as url:
        assert url.startswith("http://127.0.0.1:")
        status, kind, body = _get(url)
        assert status == 200 and "text/html" in kind and b"gantool explore" in body
        info = json.loads(_get(url + "api/info")[2])
        assert info["resolution"] == 28 and info["backend"] == "torch" and info["device"] == "cpu"
        assert info["name"] == f"{tiny_ckpt.parent.parent.name}/last.pt"
        status, kind, body = _get(url + "api/grid?start=0&count=100000")
        assert status == 400 and json.loads(body) == {"error": "count: 100000 is outside 1..64"}
        status, _, body = _get(url + "api/image.png?seed=%2Fetc%2Fpasswd")
        assert status == 400 and "is not a whole number" in json.loads(body)["error"]
        status, kind, png = _get(url + "api/image.png?seed=5&truncation=0.5")
        assert status == 200 and kind == "image/png" and png.startswith(b"\x89PNG")
        port = urllib.parse.urlsplit(url).port
        status, _, _ = _get(url + "api/info", {"Host": f"attacker.example:{port}"})
        assert status == 400, "a page elsewhere must not reach it through DNS rebinding"
        assert _get(url + "api/info")[0] == 200


def test_command_line_errors_are_one_line(tiny_ckpt, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = gantool_cli("explore", tiny_ckpt, "--port", port)
        assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
        assert "--port" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for args, words in [((), "pass a MODEL, or --url"),
                        ((tiny_ckpt, "--url", "localhost:1"), "not both"),
                        ((tmp_path / "missing.pt",), "does not exist")]:
        r = gantool_cli("explore", *args, "--port", "0", timeout=60)
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_without_the_extra_an_install_hint(tiny_ckpt, tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['uvicorn'] = None\n")
    r = gantool_cli("explore", tiny_ckpt, env_extra={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2 and "pip install 'gantool[explore]'" in r.stderr, r.stderr


# ---- a real browser --------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as the machine notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which a closed network refuses
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (the dev extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _all_loaded(page, selector: str) -> None:
    page.wait_for_function(
        "s => { const i = [...document.querySelectorAll(s)];"
        " return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0); }",
        arg=selector)


@pytest.mark.slow
def test_a_person_in_a_browser(browser, tiny_ckpt, tmp_path):
    """Load the page, move the truncation slider, open a seed, download it (generate's bytes),
    run a walk, and type a bad value: an error on the page, which keeps working."""
    with explore_server(tiny_ckpt) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.goto(url)
        _all_loaded(page, "#grid img")
        assert page.locator("#grid figure").count() == 24
        assert page.locator("#class-box").is_hidden(), "an unconditional model has no classes"
        assert "torch on cpu" in page.inner_text("#where")
        assert "ms" in page.inner_text("#timing")

        page.locator("#tnone").uncheck()  # truncation: the slider (a grid at 1), moved to 0.5
        page.locator("#truncation").fill("0.5")  # before the first grid has come back
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every("
                               "i => i.src.includes('truncation=0.5'))")
        _all_loaded(page, "#grid img")

        page.focus("#grid figure[data-seed='6']")  # the keyboard opens a seed
        page.keyboard.press("Enter")
        assert page.inner_text("#viewer-title") == "seed 6"
        page.click("#grid figure[data-seed='7']")
        assert page.inner_text("#viewer-title") == "seed 7"
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "seed000007.png"
        command = page.inner_text("#command").split()
        assert "--truncation" in command and "0.5" in command
        out = _generated(tmp_path, tiny_ckpt, *command[3:-2])
        assert (out / "seed000007.png").read_bytes() == saved.read_bytes()

        page.click("#add-walk")
        assert page.input_value("#walk-seeds") == "0,1,2,7"
        page.fill("#walk-frames", "3")
        page.click("#run-walk")
        _all_loaded(page, "#walk-strip img")
        assert page.locator("#walk-strip img").count() == 12
        assert "--frames-dir walk/" in page.inner_text("#walk-command")

        page.fill("#start", "-5")  # a bad value: an error on the page
        page.dispatch_event("#start", "change")
        page.wait_for_selector("#error", state="visible")
        assert "start: -5 is outside" in page.inner_text("#error-text")
        page.fill("#start", "100")  # ... and the page keeps working
        page.dispatch_event("#start", "change")
        page.wait_for_selector("#error", state="hidden")
        _all_loaded(page, "#grid img")
        assert page.locator("#grid figure").first.get_attribute("data-seed") == "100"
        page.close()


@pytest.mark.slow
def test_the_class_chooser_and_onnx_in_a_browser(browser, tmp_path):
    """A conditional model exported to ONNX: the page offers its classes, draws the chosen one
    through ONNX Runtime, and the image equals gantool generate --backend onnx's."""
    from gantool.train.loop import run

    cfg = tiny_config(**{"data.class_labels": True, "train.steps": 2,
                         "train.checkpoint_every": 2})
    ckpt = run(cfg, out=tmp_path / "runs", progress=False).run_dir / "checkpoints" / "last.pt"
    export = tmp_path / "export"
    assert gantool_cli("export", ckpt, "--out", export, "--formats", "onnx").returncode == 0
    with explore_server(export, "--backend", "onnx") as url:
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        page.goto(url)
        _all_loaded(page, "#grid img")
        assert page.locator("#class-box").is_visible() and "onnx on cpu" in page.inner_text(
            "#where")
        with page.expect_response(lambda r: "/api/grid" in r.url):
            page.select_option("#klass", "Bag")
        _all_loaded(page, "#grid img")
        page.click("#grid figure[data-seed='3']")
        command = page.inner_text("#command").split()
        assert "--class" in command and "Bag" in command and "onnx" in command
        src = page.get_attribute("#large", "src")
        png = page.request.get(url.rstrip("/") + src).body()
        out = _generated(tmp_path, export, *command[3:-2])
        assert (out / "seed000003.png").read_bytes() == png
        page.close()
