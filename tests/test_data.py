"""gantool.data: real image files written with Pillow into tmp_path, real IDX files, no mocks."""

from __future__ import annotations

import gzip
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantool.data import BUILTIN_DATASETS, ImageSet, load_dataset
from gantool.errors import DataError, GantoolError

from conftest import FASHION_MNIST, TWEMOJI_TAR

RED, GREEN, BLUE, BG = (255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30)


def solid(size: tuple[int, int], color, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, color)


def pixel(s: ImageSet, i: int, y: int, x: int) -> tuple[int, ...]:
    return tuple(int(v) for v in s.images[i, :, y, x])


def write_idx(path: Path, images: np.ndarray, magic: int = 2051) -> None:
    """(N, rows, cols) uint8 -> an IDX file; gzip if the name ends in .gz."""
    data = struct.pack(">IIII", magic, *images.shape) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# --- formats, modes, order ---------------------------------------------------------------


def test_formats_nested_sorted_and_solid_colours_survive(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    solid((20, 20), RED).save(tmp_path / "a.png")
    solid((20, 20), BLUE).save(tmp_path / "b" / "c.webp", lossless=True)
    solid((20, 20), GREEN).save(tmp_path / "b" / "deep" / "d.JPEG", quality=95)
    solid((20, 20), 100, "L").save(tmp_path / "e.BMP")
    solid((20, 20), RED).save(tmp_path / ".hidden.png")  # ignored
    (tmp_path / "notes.txt").write_text("not an image")  # ignored
    s = load_dataset(tmp_path, 16, 3)
    assert s.images.shape == (4, 3, 16, 16) and s.images.dtype == np.uint8
    assert s.images.flags.c_contiguous and len(s) == 4 and s.skipped == ()
    assert s.source == f"folder {tmp_path} (4 images)"
    # sorted POSIX paths: a.png, b/c.webp, b/deep/d.JPEG, e.BMP
    assert (s.images[0].reshape(3, -1).T == RED).all()
    assert (s.images[1].reshape(3, -1).T == BLUE).all()
    assert np.abs(s.images[2].reshape(3, -1).T.astype(int) - GREEN).max() <= 3  # JPEG is lossy
    assert (s.images[3] == 100).all()  # grey replicated to RGB
    grey = load_dataset(tmp_path, 16, 1)
    assert grey.images.shape == (4, 1, 16, 16)
    assert (grey.images[0] == 76).all()  # ITU-R 601 luma of pure red
    assert (grey.images[3] == 100).all()


def test_rgba_is_alpha_blended_onto_background(tmp_path: Path) -> None:
    a = np.zeros((16, 16, 4), np.uint8)
    a[:, :8] = (*RED, 0)  # fully transparent red -> background
    a[:, 8:12] = (*BLUE, 255)  # opaque blue stays blue
    a[:, 12:] = (200, 100, 50, 128)  # half alpha -> blend
    Image.fromarray(a, "RGBA").save(tmp_path / "x.png")
    s = load_dataset(tmp_path, 16, 3, background=BG)
    assert pixel(s, 0, 5, 0) == BG and pixel(s, 0, 5, 7) == BG
    assert pixel(s, 0, 5, 9) == BLUE
    expected = [c * 128 / 255 + b * 127 / 255 for c, b in zip((200, 100, 50), BG, strict=True)]
    assert np.allclose(pixel(s, 0, 5, 13), expected, atol=1)
    grey = load_dataset(tmp_path, 16, 1, background=BG)
    bg_luma = round(0.299 * BG[0] + 0.587 * BG[1] + 0.114 * BG[2])
    assert abs(int(grey.images[0, 0, 5, 0]) - bg_luma) <= 1


def test_la_palette_transparency_and_16bit_modes(tmp_path: Path) -> None:
    la = np.zeros((16, 16, 2), np.uint8)
    la[:, :, 0], la[:, 8:, 1] = 90, 255  # left half transparent
    Image.fromarray(la, "LA").save(tmp_path / "1_la.png")
    p = Image.new("P", (16, 16), 0)
    p.putpalette([*BLUE, *GREEN] + [0] * 762)
    p.paste(1, (8, 0, 16, 16))  # right half: index 1 (green), left: index 0 (transparent)
    p.save(tmp_path / "2_p.png", transparency=0)
    Image.fromarray(np.full((16, 16), 257 * 200, np.uint16)).save(tmp_path / "3_i16.png")
    assert Image.open(tmp_path / "3_i16.png").mode.startswith("I")
    s = load_dataset(tmp_path, 16, 3, background=BG)
    assert pixel(s, 0, 3, 2) == BG and pixel(s, 0, 3, 12) == (90, 90, 90)
    assert pixel(s, 1, 3, 2) == BG and pixel(s, 1, 3, 12) == GREEN
    assert (s.images[2] == 200).all()  # 16-bit scaled to 8-bit, not clipped to 255


def test_crop_and_pad_of_a_non_square_image(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20], a[:, 20:] = RED, BLUE  # wide: left half red, right half blue
    Image.fromarray(a).save(tmp_path / "wide.png")
    crop = load_dataset(tmp_path, 16, 3, fit="crop", background=BG)
    # centre crop of columns 10..30: left half red, right half blue, no background
    assert pixel(crop, 0, 8, 1) == RED and pixel(crop, 0, 8, 14) == BLUE
    assert not (crop.images[0].reshape(3, -1).T == BG).all(axis=1).any()
    pad = load_dataset(tmp_path, 16, 3, fit="pad", background=BG)
    # 40x20 -> 16x8, centred: rows 0-3 and 12-15 are background, left/right colours kept
    im = pad.images[0]  # (3, 16, 16)
    for rows in (slice(0, 4), slice(12, 16)):
        assert (im[:, rows].reshape(3, -1).T == BG).all()
    assert pixel(pad, 0, 8, 0) == RED and pixel(pad, 0, 8, 15) == BLUE
    assert pixel(pad, 0, 4, 0) == RED and pixel(pad, 0, 11, 15) == BLUE


def test_tall_image_pads_left_and_right(tmp_path: Path) -> None:
    solid((10, 30), GREEN).save(tmp_path / "tall.png")  # 10 wide, 30 tall
    s = load_dataset(tmp_path, 24, 3, fit="pad", background=BG)  # -> 8x24 at columns 8..15
    im = s.images[0]
    assert (im[:, :, :8].reshape(3, -1).T == BG).all()
    assert (im[:, :, 16:].reshape(3, -1).T == BG).all()
    assert (im[:, :, 8:16].reshape(3, -1).T == GREEN).all()


def test_upscaling_and_exif_orientation(tmp_path: Path) -> None:
    solid((5, 5), (12, 200, 77)).save(tmp_path / "a_tiny.png")
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20], wide[:, 20:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # stored wide; shown rotated 90 degrees clockwise (tall, red on top)
    Image.fromarray(wide).save(tmp_path / "b_rotated.jpg", exif=exif, quality=95)
    s = load_dataset(tmp_path, 32, 3, fit="pad", background=BG)
    assert (s.images[0].reshape(3, -1).T == (12, 200, 77)).all()  # upscaled 5 -> 32
    top, bottom = np.array(pixel(s, 1, 4, 16)), np.array(pixel(s, 1, 28, 16))
    assert np.abs(top - RED).max() < 20 and np.abs(bottom - BLUE).max() < 20
    assert pixel(s, 1, 16, 0) == BG  # tall after rotation -> padded left and right


def test_large_jpeg_is_downscaled(tmp_path: Path) -> None:
    solid((1200, 900), (40, 160, 220)).save(tmp_path / "big.jpg", quality=95)
    s = load_dataset(tmp_path, 32, 3)
    assert s.images.shape == (1, 3, 32, 32)
    assert np.abs(s.images[0].reshape(3, -1).T.astype(int) - (40, 160, 220)).max() <= 3


# --- unreadable files ------------------------------------------------------------------


def test_corrupt_and_truncated_files_are_skipped(tmp_path: Path) -> None:
    for i in range(3):
        solid((12, 12), RED).save(tmp_path / f"ok{i}.png")
    (tmp_path / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    whole = (tmp_path / "full.png").read_bytes()
    (tmp_path / "full.png").unlink()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    s = load_dataset(tmp_path, 8, 3)
    assert len(s) == 3 and (s.images == np.array(RED, np.uint8)[:, None, None]).all()
    assert [Path(f).name for f, _ in s.skipped] == ["random.png", "truncated.png"]
    for _, reason in s.skipped:
        assert reason and "\n" not in reason and len(reason) <= 200


def test_a_fifo_named_like_an_image_is_passed_over(tmp_path: Path) -> None:
    """Opening a FIFO blocks until someone writes to it: the scan lists regular files only."""
    import os
    import threading

    solid((12, 12), RED).save(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "x.png")
    result: list = []
    t = threading.Thread(target=lambda: result.append(load_dataset(tmp_path, 8, 3)), daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():  # unblock the stuck open before failing
        with open(tmp_path / "x.png", "wb"):
            pass
        pytest.fail("load_dataset blocked on a FIFO")
    assert len(result[0]) == 1 and not result[0].skipped


def test_an_archive_member_that_inflates_to_gigabytes_is_skipped_unread(tmp_path: Path) -> None:
    """A 300 MiB member (0.3 MiB compressed) is refused by its size, not read into memory."""
    import tracemalloc

    from gantool.data.dataset import MAX_FILE_BYTES

    zpath = tmp_path / "bomb.zip"
    solid((10, 10), RED).save(tmp_path / "a.png")
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(tmp_path / "a.png", "a.png")
        with z.open("huge.png", "w", force_zip64=True) as f:
            block = bytes(2**20)
            for _ in range(MAX_FILE_BYTES // 2**20 + 44):
                f.write(block)
    assert zpath.stat().st_size < 2 * 2**20
    tracemalloc.start()
    s = load_dataset(zpath, 8, 3, workers=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(s) == 1 and [Path(f).name for f, _ in s.skipped] == ["huge.png"]
    assert "larger than 256 MiB" in s.skipped[0][1]
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_all_files_unreadable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path, 8, 3)
    msg = one_line_error(e)
    assert "none of the 2 image files" in msg and "first error" in msg and "a.png" in msg


# --- zip ------------------------------------------------------------------------------


def test_zip_archive_with_nested_folders(tmp_path: Path) -> None:
    for name, c in [("z.png", BLUE), ("a.png", RED), ("x.bmp", GREEN)]:
        solid((10, 10), c).save(tmp_path / name)
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.write(tmp_path / "z.png", "top/z.png")
        z.write(tmp_path / "a.png", "top/sub/a.png")
        z.write(tmp_path / "x.bmp", "other/x.bmp")
        z.writestr("__MACOSX/top/._z.png", b"resource fork")  # ignored
        z.writestr("top/README.txt", "ignored")
        z.writestr("top/broken.png", b"\x89PNG\r\n\x1a\n broken")
    s = load_dataset(zpath, 8, 3)
    # sorted members: other/x.bmp, top/broken.png (skipped), top/sub/a.png, top/z.png
    assert [pixel(s, i, 0, 0) for i in range(len(s))] == [GREEN, RED, BLUE]
    assert s.skipped and s.skipped[0][0] == f"{zpath}/top/broken.png"
    assert s.source == f"zip {zpath} (3 images)"


def test_zip_without_images_and_bad_zip(tmp_path: Path) -> None:
    zpath = tmp_path / "empty.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("readme.txt", "nothing here")
    with pytest.raises(DataError) as e:
        load_dataset(zpath, 8, 3)
    assert "no images (.png .jpg .jpeg .webp .bmp) found under" in one_line_error(e)
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "bad.zip", 8, 3)
    assert "zip" in one_line_error(e)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_archive_with_nested_folders(tmp_path: Path, suffix: str) -> None:
    for name, c in [("z.png", BLUE), ("a.png", RED)]:
        solid((10, 10), c).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    tpath = tmp_path / f"set{suffix}"
    with tarfile.open(tpath, "w:gz" if suffix.endswith("gz") else "w") as t:
        t.add(tmp_path / "z.png", "top/z.png")
        t.add(tmp_path / "a.png", "top/sub/a.png")
        t.add(tmp_path / "broken.png", "top/broken.png")
        t.add(tmp_path / "a.png", "top/._a.png")  # hidden: ignored
    s = load_dataset(tpath, 8, 3, workers=1)
    assert [pixel(s, i, 0, 0) for i in range(len(s))] == [RED, BLUE]
    assert s.skipped[0][0] == f"{tpath}/top/broken.png"
    assert s.source == f"tar {tpath} (2 images)"


def test_bad_tar(tmp_path: Path) -> None:
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "bad.tar", 8, 3)
    assert "tar" in one_line_error(e) and "\n" not in one_line_error(e)


@pytest.mark.slow
@pytest.mark.skipif(not TWEMOJI_TAR.is_file(), reason="needs ../shared/data/twemoji-64")
def test_twemoji_tar_in_parallel_workers() -> None:
    s = load_dataset(TWEMOJI_TAR, 32, 3, background=(255, 255, 255), workers=2)
    assert len(s) == 3786 and not s.skipped
    assert s.images.mean() > 128  # transparent backgrounds composited onto white


# --- IDX ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_idx_file_raw_and_gz(tmp_path: Path, name: str) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, imgs)
    s = load_dataset(tmp_path / name, 28, 1)
    assert s.images.shape == (5, 1, 28, 28) and np.array_equal(s.images[:, 0], imgs)
    assert s.source == f"IDX {tmp_path / name} (5 images)"
    rgb = load_dataset(tmp_path / name, 28, 3)
    assert np.array_equal(rgb.images, np.repeat(imgs[:, None], 3, axis=1))
    big = load_dataset(tmp_path / name, 32, 3)
    assert big.images.shape == (5, 3, 32, 32) and big.images.flags.c_contiguous


def test_idx_solid_image_survives_resize(tmp_path: Path) -> None:
    write_idx(tmp_path / "x-images-idx3-ubyte", np.full((2, 28, 28), 173, np.uint8))
    s = load_dataset(tmp_path / "x-images-idx3-ubyte", 64, 1)
    assert (s.images == 173).all()


def test_idx_folder_prefers_train_else_concatenates(tmp_path: Path) -> None:
    train, test = np.full((3, 28, 28), 1, np.uint8), np.full((2, 28, 28), 2, np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"labels are ignored")
    s = load_dataset(tmp_path, 28, 1)
    assert len(s) == 3 and (s.images == 1).all()
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    write_idx(tmp_path / "extra-images-idx3-ubyte", np.full((4, 28, 28), 3, np.uint8))
    s = load_dataset(tmp_path, 28, 1)  # sorted: extra (3s), then t10k (2s)
    assert len(s) == 6 and (s.images[:4] == 3).all() and (s.images[4:] == 2).all()
    assert s.source.endswith(": extra-images-idx3-ubyte + t10k-images-idx3-ubyte.gz (6 images)")


def test_idx_bad_magic_and_truncation_are_errors(tmp_path: Path) -> None:
    imgs = np.zeros((4, 28, 28), np.uint8)
    write_idx(tmp_path / "labels-images-idx3-ubyte", imgs, magic=2049)
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "labels-images-idx3-ubyte", 28, 1)
    assert "magic 2049" in one_line_error(e) and "2051" in str(e.value)
    good = tmp_path / "cut-images-idx3-ubyte"
    write_idx(good, imgs)
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DataError) as e:
        load_dataset(good, 28, 1)
    assert "truncated" in one_line_error(e)
    gz = tmp_path / "cut-images-idx3-ubyte.gz"
    write_idx(gz, imgs)
    gz.write_bytes(gz.read_bytes()[:30])
    with pytest.raises(DataError) as e:
        load_dataset(gz, 28, 1)
    assert "gzip" in one_line_error(e)


@pytest.mark.skipif(
    not FASHION_MNIST.is_dir(), reason=f"real Fashion-MNIST absent: {FASHION_MNIST}"
)
def test_real_fashion_mnist_folder() -> None:
    s = load_dataset(FASHION_MNIST, 28, 1)
    assert s.images.shape == (60000, 1, 28, 28) and s.images.dtype == np.uint8
    assert s.images.min() == 0 and s.images.max() == 255
    assert s.source == f"IDX {FASHION_MNIST / 'train-images-idx3-ubyte.gz'} (60,000 images)"


def test_builtin_sample() -> None:
    assert "fashion-mnist" in BUILTIN_DATASETS
    s = load_dataset("builtin:fashion-mnist", 28, 1)
    assert s.images.shape == (6000, 1, 28, 28) and s.images.dtype == np.uint8
    assert s.images.min() == 0 and s.images.max() == 255 and 20 < s.images.mean() < 120
    assert s.source == "builtin:fashion-mnist (6,000 images)"
    rgb = load_dataset("builtin:fashion-mnist", 32, 3)
    assert rgb.images.shape == (6000, 3, 32, 32)
    assert np.array_equal(rgb.images[:, 0], rgb.images[:, 2])
    if FASHION_MNIST.is_dir():  # the sample is the first 600 of each class, in file order
        labels = gzip.decompress((FASHION_MNIST / "train-labels-idx1-ubyte.gz").read_bytes())
        labels_arr = np.frombuffer(labels, np.uint8, offset=8)
        keep = np.sort(np.concatenate([np.flatnonzero(labels_arr == c)[:600] for c in range(10)]))
        full = load_dataset(FASHION_MNIST, 28, 1)
        assert np.array_equal(full.images[keep], s.images)


# --- parallel decoding ----------------------------------------------------------------


def test_parallel_decode_matches_in_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(300):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:04d}.png"
        )
    for i in (5, 150, 151, 299):  # spread over several chunks, including the last
        (tmp_path / f"{i:04d}.png").write_bytes(b"corrupt")
    serial = load_dataset(tmp_path, 8, 3, workers=1)
    parallel = load_dataset(tmp_path, 8, 3, workers=2, progress=True)
    assert len(serial) == len(parallel) == 296
    assert np.array_equal(serial.images, parallel.images)
    assert serial.skipped == parallel.skipped
    assert [Path(f).name for f, _ in parallel.skipped] == [
        "0005.png",
        "0150.png",
        "0151.png",
        "0299.png",
    ]
    assert parallel.images.flags.c_contiguous


# --- input errors ---------------------------------------------------------------------


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "nope", 32, 3)
    assert "does not exist" in one_line_error(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "empty", 32, 3)
    assert one_line_error(e).startswith("no images (.png .jpg .jpeg .webp .bmp) found under")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "file.txt", 32, 3)
    one_line_error(e)
    with pytest.raises(DataError) as e:
        load_dataset("builtin:cifar", 32, 3)
    assert "builtin:fashion-mnist" in one_line_error(e)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"fit": "stretch"}, "crop, pad"),
        ({"channels": 4}, "channels"),
        ({"channels": 2}, "channels"),
        ({"resolution": 4}, ">= 8"),
        ({"background": (0, 0)}, "background"),
        ({"workers": 0}, "workers"),
    ],
)
def test_option_errors(tmp_path: Path, kwargs: dict, words: str) -> None:
    solid((8, 8), RED).save(tmp_path / "a.png")
    args = {"path": tmp_path, "resolution": 16, "channels": 3} | kwargs
    with pytest.raises(DataError) as e:
        load_dataset(**args)
    assert words in one_line_error(e)
    assert isinstance(e.value, GantoolError)


def test_imageset_contract() -> None:
    a = np.zeros((2, 3, 8, 8), np.uint8)
    s = ImageSet(a[:, :, :, :], "test")
    assert len(s) == 2 and s.skipped == ()
    t = ImageSet(np.zeros((2, 8, 8, 3), np.uint8).transpose(0, 3, 1, 2), "t")
    assert t.images.flags.c_contiguous
    with pytest.raises(ValueError):
        ImageSet(np.zeros((2, 3, 8, 8), np.float32), "bad")
    with pytest.raises(ValueError):
        ImageSet(np.zeros((2, 2, 8, 8), np.uint8), "bad")
