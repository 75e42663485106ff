"""Fuzzing the readers (hypothesis, bounded): whatever the bytes or the folder layout, only lungxray's own
documented errors escape (`ImageReadError` from the image readers, `DatasetError` from discovery), and what is
returned is well formed.

Inputs are mutated from real files (the bundled sample's PNGs, JPEGs and DICOMs made from them): bit flips,
truncation, PNG chunk corruption (lengths, types, CRCs), random IHDR / SOF sizes, random or malformed DICOM
elements written by pydicom and then mangled at the byte level, and random dataset trees with odd names,
extensions and empty files. The run is derandomised (the same inputs every time, so CI is stable); set
LUNGXRAY_FUZZ_EXAMPLES=N for a longer, random campaign. Each test prints how many inputs it tried
(`pytest -s`); docs/RESULTS.md (Reliability) records the figures.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lungxray.data.dicom import read_dicom
from lungxray.data.discovery import scan_dataset
from lungxray.data.io import read_image, read_mask
from lungxray.errors import DatasetError, ImageReadError

import pydicom  # noqa: E402  (a hard dependency: a missing one must fail, not skip)
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom import uid as _uid  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "radiography-sample"
_RANDOM_CAMPAIGN = int(os.environ.get("LUNGXRAY_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_RANDOM_CAMPAIGN or 300,
    deadline=None,
    derandomize=not _RANDOM_CAMPAIGN,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="lungxray-fuzz-") as d:
        yield Path(d)


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    # pydicom logs every invalid value it meets; here invalid values are the point.
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)
    total = sum(TRIED.values())
    print("\nfuzzed inputs: " + ", ".join(f"{k} {v}" for k, v in TRIED.items()) + f"; total {total}")


def _count(target: str) -> None:
    TRIED[target] = TRIED.get(target, 0) + 1


# ------------------------------------------------------------------------------------ seed files
def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    """Real sample files plus small variants covering every PIL mode the reader converts."""
    rgb = sorted((SAMPLE / "COVID" / "images").glob("*.png"))[0]
    gray = next((SAMPLE / "Viral Pneumonia" / "images").glob("*.png"))
    mask = next((SAMPLE / "Viral Pneumonia" / "masks").glob("*.png"))
    small = Image.open(gray).convert("L").resize((24, 20))
    arr16 = (np.asarray(small, dtype=np.uint16) * 257).astype(np.uint16)
    pal = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    return {
        "png-rgb": rgb.read_bytes(),
        "png-gray": gray.read_bytes(),
        "png-mask": mask.read_bytes(),
        "png-16bit": _png(Image.fromarray(arr16)),
        "png-palette": _png(pal, transparency=0),
        "png-la": _png(small.convert("LA")),
        "png-1bit": _png(small.convert("1")),
        "png-interlaced": _png(small, optimize=False),
        "jpeg-gray": _jpeg(small, quality=80),
        "jpeg-rgb": _jpeg(Image.open(rgb).convert("RGB").resize((48, 48)), quality=70),
        "jpeg-progressive": _jpeg(small.convert("RGB"), progressive=True),
    }


SEEDS = _seeds()


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of each PNG chunk after the signature, as far as the structure is intact."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if end > len(data):
            break
        out.append((pos, end - pos))
        pos = end
    return out


def _fix_crc(chunk: bytes) -> bytes:
    body = chunk[4:-4]
    return chunk[:-4] + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


@st.composite
def mutated_image(draw) -> bytes:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "chunk", "ihdr", "sof", "splice"]))
        if not data:
            break
        if op == "flip":
            for _ in range(draw(st.integers(1, 8))):
                # Headers are where parsers break: bias the positions towards the first 256 bytes.
                hi = draw(st.sampled_from([min(256, len(data)), len(data)]))
                pos = draw(st.integers(0, hi - 1))
                data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "splice":
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "chunk" and data.startswith(b"\x89PNG"):
            chunks = _png_chunks(bytes(data))
            if not chunks:
                continue
            off, size = chunks[draw(st.integers(0, len(chunks) - 1))]
            what = draw(st.sampled_from(["length", "type", "crc", "drop", "dup", "body"]))
            chunk = bytes(data[off : off + size])
            if what == "length":
                chunk = struct.pack(">I", draw(st.integers(0, 2**32 - 1))) + chunk[4:]
            elif what == "type":
                chunk = chunk[:4] + draw(st.binary(min_size=4, max_size=4)) + chunk[8:]
            elif what == "crc":
                chunk = chunk[:-4] + draw(st.binary(min_size=4, max_size=4))
            elif what == "drop":
                chunk = b""
            elif what == "dup":
                chunk = chunk + chunk
            else:
                body = draw(st.binary(min_size=0, max_size=min(64, max(0, size - 12))))
                chunk = _fix_crc(chunk[:8] + body + chunk[8 + len(body) : -4] + b"\0\0\0\0")
            data[off : off + size] = chunk
        elif op == "ihdr" and data.startswith(b"\x89PNG") and len(data) >= 33:
            width = draw(st.one_of(st.integers(0, 64), st.integers(0, 20000), st.integers(0, 2**31 - 1)))
            height = draw(st.one_of(st.integers(0, 64), st.integers(0, 20000), st.integers(0, 2**31 - 1)))
            depth = draw(st.sampled_from([data[24], 1, 2, 4, 8, 16, 0, 3, 255]))
            colour = draw(st.sampled_from([data[25], 0, 2, 3, 4, 6, 1, 7]))
            ihdr = bytes(data[8:16]) + struct.pack(">IIBB", width, height, depth, colour) + bytes(data[26:29]) + b"\0" * 4
            data[8:33] = _fix_crc(ihdr) if draw(st.booleans()) else ihdr
        elif op == "sof" and data.startswith(b"\xff\xd8"):
            pos = max(bytes(data).find(b"\xff\xc0"), bytes(data).find(b"\xff\xc2"))
            if pos > 0 and pos + 9 <= len(data):
                data[pos + 5 : pos + 9] = struct.pack(">HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    return bytes(data)


def _check_image(arr: np.ndarray) -> None:
    assert arr.ndim == 2 and arr.dtype == np.float32 and arr.size > 0
    assert np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0


@FUZZ
@given(data=mutated_image())
def test_fuzz_png_jpeg_readers(scratch: Path, data: bytes) -> None:
    _count("png/jpeg")
    path = scratch / "input"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _check_image(read_image(path))
        except ImageReadError:
            pass
        try:
            lung = read_mask(path)
            assert lung.ndim == 2 and lung.dtype == bool
        except ImageReadError:
            pass


# ------------------------------------------------------------------------------------------ DICOM
_SYNTAXES = [_uid.ExplicitVRLittleEndian, _uid.ImplicitVRLittleEndian, _uid.ExplicitVRBigEndian,
             _uid.DeflatedExplicitVRLittleEndian, _uid.JPEGBaseline8Bit, _uid.RLELossless, _uid.JPEG2000Lossless]
_WEIRD_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-(2**40), 2**40),
    st.sampled_from(["", "abc", "1\\2\\3", "nan", "-inf", "1e400", " ", "\\"]),
)


def _set(ds: Dataset, keyword: str, value) -> None:
    """Assign even values pydicom would warn about (that is the point)."""
    try:
        setattr(ds, keyword, value)
    except (ValueError, TypeError, OverflowError):
        pass


@st.composite
def dicom_file(draw) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _dicom_file(draw)


def _dicom_file(draw) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    syntax = draw(st.sampled_from(_SYNTAXES))
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, "1.2.3.4.5", "DX"
    rows = draw(st.one_of(st.integers(0, 48), st.integers(0, 65535)))
    cols = draw(st.one_of(st.integers(0, 48), st.integers(0, 65535)))
    bits = draw(st.sampled_from([8, 16, 16, 32, 1, 12, 0, 64]))
    spp = draw(st.sampled_from([1, 1, 1, 3, 0, 2]))
    _set(ds, "Rows", rows)
    _set(ds, "Columns", cols)
    _set(ds, "BitsAllocated", bits)
    _set(ds, "BitsStored", draw(st.sampled_from([bits, 12, 0, 1, 40])))
    _set(ds, "HighBit", draw(st.sampled_from([max(bits - 1, 0), 11, 0, 63])))
    _set(ds, "PixelRepresentation", draw(st.sampled_from([0, 1, 2])))
    _set(ds, "SamplesPerPixel", spp)
    _set(ds, "PhotometricInterpretation",
         draw(st.sampled_from(["MONOCHROME2", "MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "", "XYZ"])))
    if spp > 1:
        _set(ds, "PlanarConfiguration", draw(st.sampled_from([0, 1, 2])))
    for keyword in ("NumberOfFrames", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if draw(st.booleans()):
            value = draw(st.one_of(_WEIRD_NUMBERS, st.lists(_WEIRD_NUMBERS, min_size=0, max_size=3)))
            _set(ds, keyword, value)
    if draw(st.integers(0, 5)) == 0:
        item = Dataset()
        _set(item, "LUTDescriptor", draw(st.lists(st.integers(-5, 70000), min_size=0, max_size=4)))
        _set(item, "LUTData", draw(st.lists(st.integers(0, 65535), min_size=0, max_size=8)))
        _set(ds, "VOILUTSequence", [item])
    if draw(st.integers(0, 8)) != 0:  # usually pixel data: the right size, or any size
        n = rows * cols * max(spp, 1) * max(bits, 8) // 8
        size = n if draw(st.booleans()) and n <= 1 << 16 else draw(st.integers(0, 4096))
        seed = draw(st.integers(0, 2**32 - 1))
        raw = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
        if syntax.is_encapsulated:
            from pydicom.encaps import encapsulate

            raw = encapsulate([raw[: max(len(raw), 2) & ~1] or b"\0\0"])
        ds.PixelData = raw if len(raw) % 2 == 0 else raw + b"\0"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception:  # noqa: BLE001 - pydicom refusing to write it is fine: mangle what it did write
            pass
    data = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 3))):
        if len(data) <= 132:  # the preamble and "DICM" stay: damage what a reader has to parse
            break
        op = draw(st.sampled_from(["flip", "truncate", "overwrite"]))
        if op == "flip":
            pos = draw(st.integers(132, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            data = data[: draw(st.integers(132, len(data)))]
        else:
            pos = draw(st.integers(132, len(data) - 1))
            patch = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(patch)] = patch
    return bytes(data)


@FUZZ
@given(data=dicom_file())
def test_fuzz_dicom_reader(scratch: Path, data: bytes) -> None:
    _count("dicom")
    path = scratch / "input.dcm"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for reader in (read_image, read_dicom):
            try:
                _check_image(reader(path))
            except ImageReadError:
                pass


# ------------------------------------------------------------------------------------ mask pairing
_NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\\\0", exclude_categories=("Cs",)),
                 min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
_CLASS_DIRS = st.sampled_from(["COVID", "covid-19", "Normal", "NORMAL", "Viral Pneumonia", "viral_pneumonia",
                               "Lung_Opacity", "Pneumonia", "x"])
_SUFFIXES = st.sampled_from([".png", ".PNG", ".jpg", ".jpeg", ".dcm", ".DICOM", ".txt", "", ".png.bak", ".tmp"])
_SUBDIRS = st.sampled_from(["", "images", "masks", "lung masks", "lung_masks", "Images", "MASKS", "other"])


@st.composite
def dataset_tree(draw) -> list[tuple[str, bytes | None]]:
    """(relative path, content or None for a folder) entries, possibly nested one level above the classes."""
    prefix = draw(st.sampled_from(["", "COVID-19_Radiography_Dataset/", "a/b/", "a/b/c/d/e/"]))
    entries: list[tuple[str, bytes | None]] = []
    for cls in draw(st.lists(_CLASS_DIRS, min_size=0, max_size=4)):
        entries.append((prefix + cls, None))
        for _ in range(draw(st.integers(0, 6))):
            sub = draw(_SUBDIRS)
            name = draw(_NAMES) + draw(_SUFFIXES)
            content = draw(st.sampled_from([b"", SEEDS["png-gray"][:64], SEEDS["png-mask"], b"not an image"]))
            if draw(st.integers(0, 9)) == 0:
                entries.append((f"{prefix}{cls}/{sub}/{name}".replace("//", "/"), None))  # a folder named like a file
            else:
                entries.append((f"{prefix}{cls}/{sub}/{name}".replace("//", "/"), content))
    return entries


def _build(root: Path, entries: list[tuple[str, bytes | None]]) -> None:
    for rel, content in entries:
        p = root / rel
        try:
            if content is None:
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                if not p.is_dir():
                    p.write_bytes(content)
        except OSError:  # a name the file system refuses (too long, a file where a folder should be)
            continue


@FUZZ
@given(entries=dataset_tree(), classes=st.sampled_from([None, ("COVID", "Normal"), ("normal", "LUNG OPACITY"), ("Normal", "Normal")]))
def test_fuzz_mask_pairing(scratch: Path, entries, classes) -> None:
    _count("mask pairing")
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        root = Path(d)
        _build(root, entries)
        try:
            index = scan_dataset(root, classes)
        except DatasetError:
            return
        for s in index.samples:
            image = index.root / s.path
            assert image.is_file() and s.label in index.classes
            if s.mask_path is not None:
                mask = index.root / s.mask_path
                assert mask.is_file() and mask != image
                assert mask.stem.lower() == image.stem.lower()
        assert len({s.path for s in index.samples}) == len(index.samples)


def test_palette_png_without_its_palette_is_a_read_error(scratch: Path) -> None:
    """Found by the fuzzer: PIL opens it, then `convert("RGB")` fails with an AssertionError."""
    data = SEEDS["png-palette"]
    pos = data.find(b"PLTE") - 4
    (length,) = struct.unpack(">I", data[pos : pos + 4])
    path = scratch / "no-plte.png"
    path.write_bytes(data[:pos] + data[pos + 12 + length :])
    with pytest.raises(ImageReadError, match="corrupt image"):
        read_mask(path)
