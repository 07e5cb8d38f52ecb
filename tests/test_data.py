"""Tests for imssa.data: IDX parsing, MNIST layouts and downloads, sdigits, FSDD log-mel features,
splits and normalization. Synthetic files in tmp_path; the real data folder when present."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from imssa.data import (
    DATA_DIR_ENV,
    TASKS,
    LogMelConfig,
    load_fsdd_raw,
    load_mnist_raw,
    load_task,
    log_mel_spectrogram,
    mel_filterbank,
    psmnist_permutation,
    read_idx,
    resolve_data_dir,
    sdigits_test_indices,
)
from imssa.data import fsdd as fsdd_module
from imssa.data import mnist as mnist_module
from imssa.errors import ImssaError

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("IMSSA_TEST_DATA", REPO.parent / "shared" / "data"))
N_TRAIN, N_TEST = 40, 12


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test touches the network or the user's data folder setting."""

    def no_fetch(url, timeout):
        pytest.fail(f"a test tried to download {url}")

    monkeypatch.setattr(mnist_module, "_fetch", no_fetch)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


# --- helpers ---------------------------------------------------------------------------------
IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int16"): 0x0B, np.dtype("int32"): 0x0C,
             np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written by hand: magic, big-endian dims, big-endian values."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    dims = struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def synthetic_mnist(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(N_TEST)[::-1] % 10).astype(np.uint8),
    }


def write_mnist(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    for key, stem in mnist_module.MNIST_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])


@pytest.fixture
def mnist_dir(tmp_path):
    arrays = synthetic_mnist()
    write_mnist(tmp_path, arrays)
    return tmp_path, arrays


def unnormalize(data, split) -> torch.Tensor:
    return split.x * data.norm_std + data.norm_mean


SPEAKERS = ("alice", "bob")
N_TAKES = 7  # takes 0-4 test, 5-6 train


def write_fsdd(folder: Path) -> None:
    """10 digits x 2 speakers x 7 takes: tones of 300 + 100*digit Hz, lengths around 1 s.

    alice is int16 PCM, bob uint8 PCM.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for digit in range(10):
        for speaker in SPEAKERS:
            for take in range(N_TAKES):
                n = int(rng.integers(4000, 10000))
                t = np.arange(n) / 8000
                wave = 0.5 * np.sin(2 * np.pi * (300 + 100 * digit) * t) + 0.01 * rng.normal(size=n)
                if speaker == "alice":
                    pcm = np.round(wave * 32767).astype(np.int16)
                else:
                    pcm = np.round(wave * 127 + 128).astype(np.uint8)
                wavfile.write(folder / f"{digit}_{speaker}_{take}.wav", 8000, pcm)


@pytest.fixture(scope="module")
def fsdd_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdd")
    write_fsdd(root / "recordings")
    return root


# --- IDX --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "float32", "float64"])
def test_read_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    out = read_idx(write_idx(tmp_path / f"a-idx{suffix}", array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 0  # writable, so torch.from_numpy takes it without a warning


def test_read_idx_corrupt_files_name_the_file(tmp_path):
    good = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    cases = {
        "bad-magic": b"\x08\x03" + good[2:],
        "bad-type": good[:2] + b"\x07" + good[3:],
        "truncated": good[:-7],
        "too-long": good + b"\x00",
        "header-cut": good[:9],
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}-idx3-ubyte"
        path.write_bytes(data)
        with pytest.raises(ImssaError, match=str(path)):
            read_idx(path)
    cut_gz = tmp_path / "cut-idx3-ubyte.gz"
    cut_gz.write_bytes(gzip.compress(good)[:30])
    with pytest.raises(ImssaError, match=str(cut_gz)):
        read_idx(cut_gz)
    not_gz = tmp_path / "plain-idx3-ubyte.gz"
    not_gz.write_bytes(good)
    with pytest.raises(ImssaError, match=str(not_gz)):
        read_idx(not_gz)


# --- MNIST files and layouts ----------------------------------------------------------------
@pytest.mark.parametrize("layout", ["flat-gz", "flat-raw", "torchvision", "subfolder"])
def test_mnist_layouts(tmp_path, layout):
    arrays = synthetic_mnist()
    folder = {"flat-gz": tmp_path, "flat-raw": tmp_path, "torchvision": tmp_path / "MNIST" / "raw",
              "subfolder": tmp_path / "mnist"}[layout]
    write_mnist(folder, arrays, gz=layout != "flat-raw")
    raw = load_mnist_raw(tmp_path, download=False)
    assert raw.folder == folder
    for key, array in arrays.items():
        np.testing.assert_array_equal(getattr(raw, key), array)


def test_mnist_prefers_uncompressed(mnist_dir):
    root, arrays = mnist_dir
    other = synthetic_mnist(seed=5)
    write_idx(root / "train-images-idx3-ubyte", other["train_images"])
    np.testing.assert_array_equal(load_mnist_raw(root, download=False).train_images,
                                  other["train_images"])


def test_mnist_inconsistent_files(tmp_path):
    arrays = synthetic_mnist()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    write_mnist(tmp_path, arrays)
    with pytest.raises(ImssaError, match="train-labels-idx1-ubyte"):
        load_mnist_raw(tmp_path, download=False)
    arrays = synthetic_mnist()
    arrays["test_labels"][3] = 10
    write_mnist(tmp_path, arrays)
    with pytest.raises(ImssaError, match="t10k-labels-idx1-ubyte.gz has label 10"):
        load_mnist_raw(tmp_path, download=False)


def test_mnist_missing_folder_says_where_to_put_files(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(ImssaError) as info:
        load_task("smnist", nowhere, download=False)
    message = str(info.value)
    for needed in ("IMSSA_DATA_DIR", "--data-dir", str(nowhere), "train-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte", "disabled"):
        assert needed in message


def test_mnist_download_failure_is_clear_and_leaves_nothing(tmp_path, monkeypatch):
    def fail(url, timeout):
        raise OSError("no route to host")

    monkeypatch.setattr(mnist_module, "_fetch", fail)
    with pytest.raises(ImssaError, match="IMSSA_DATA_DIR") as info:
        load_task("psmnist", tmp_path / "new")
    assert "no route to host" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # not even the folder


def test_mnist_download_fetches_only_missing_files(tmp_path, monkeypatch):
    arrays = synthetic_mnist()
    write_mnist(tmp_path, {k: v for k, v in arrays.items()}, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    served = {stem + ".gz": gzip.compress(idx_bytes(arrays[key]))
              for key, stem in mnist_module.MNIST_FILES.items()}
    fetched = []

    def fake_fetch(url, timeout):
        assert timeout <= 30
        fetched.append(url.rsplit("/", 1)[1])
        return served[fetched[-1]]

    monkeypatch.setattr(mnist_module, "_fetch", fake_fetch)
    raw = load_mnist_raw(tmp_path, download=True)
    assert fetched == ["t10k-images-idx3-ubyte.gz"]
    np.testing.assert_array_equal(raw.test_images, arrays["test_images"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(served)


def test_mnist_download_rejects_corrupt_payload(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "_fetch", lambda url, timeout: gzip.compress(b"\0\0\x08"))
    with pytest.raises(ImssaError, match="truncated"):
        load_mnist_raw(tmp_path, download=True)
    monkeypatch.setattr(mnist_module, "_fetch", lambda url, timeout: b"<html>not found</html>")
    with pytest.raises(ImssaError, match="not a valid gzip file"):
        load_mnist_raw(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None, "mnist") == tmp_path / "home" / ".cache" / "imssa" / "mnist"
    assert resolve_data_dir(None, "fsdd") == tmp_path / "home" / ".cache" / "imssa" / "fsdd"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None, "mnist") == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg", "mnist") == tmp_path / "arg"
    assert resolve_data_dir("~/x") == tmp_path / "home" / "x"


def test_env_var_locates_data(mnist_dir, monkeypatch):
    root, arrays = mnist_dir
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    data = load_task("smnist", download=False)
    assert len(data.train) + len(data.val) == N_TRAIN


# --- sMNIST / psMNIST -------------------------------------------------------------------------
def test_smnist_shapes_labels_and_exact_pixels(mnist_dir):
    root, arrays = mnist_dir
    data = load_task("smnist", root, val_fraction=0.25, seed=3, download=False)
    assert (data.name, data.n_classes, data.d_input, data.seq_len) == ("smnist", 10, 1, 784)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, N_TEST)
    assert data.norm_mean.shape == data.norm_std.shape == (1,)
    for split, part in ((data.train, "train"), (data.val, "train"), (data.test, "test")):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape == (len(split), 784, 1)
        images = arrays[f"{part}_images"][split.index.numpy()]
        expected = torch.from_numpy(images.reshape(len(split), 784, 1).astype(np.float32)) / 255
        torch.testing.assert_close(unnormalize(data, split), expected, atol=2e-6, rtol=0)
        labels = arrays[f"{part}_labels"][split.index.numpy()]
        np.testing.assert_array_equal(split.y.numpy(), labels)
    np.testing.assert_array_equal(data.test.index.numpy(), np.arange(N_TEST))


def test_psmnist_permutation_is_a_fixed_bijection(mnist_dir):
    perm = psmnist_permutation()
    assert perm.dtype == torch.int64 and perm.shape == (784,)
    assert torch.equal(perm.sort().values, torch.arange(784))
    assert torch.equal(perm, psmnist_permutation())
    # Pinned: the permutation must be the same on every machine and torch version.
    assert perm[:10].tolist() == [60, 361, 167, 578, 107, 772, 313, 626, 81, 367]
    assert not torch.equal(perm, torch.arange(784))

    root, arrays = mnist_dir
    plain = load_task("smnist", root, seed=1, download=False)
    permuted = load_task("psmnist", root, seed=1, download=False)
    assert torch.equal(plain.train.index, permuted.train.index)
    for a, b in ((plain.train, permuted.train), (plain.test, permuted.test)):
        torch.testing.assert_close(b.x, a.x[:, perm], atol=1e-5, rtol=0)
    again = load_task("psmnist", root, seed=1, download=False)
    assert torch.equal(again.train.x, permuted.train.x)


def test_normalization_uses_train_statistics_only(mnist_dir):
    root, arrays = mnist_dir
    data = load_task("smnist", root, val_fraction=0.3, download=False)
    train_pixels = arrays["train_images"][data.train.index.numpy()].astype(np.float64) / 255
    np.testing.assert_allclose(data.norm_mean.numpy(), [train_pixels.mean()], rtol=1e-6)
    np.testing.assert_allclose(data.norm_std.numpy(), [train_pixels.std()], rtol=1e-6)
    assert abs(data.train.x.mean().item()) < 1e-5
    assert abs(data.train.x.std(unbiased=False).item() - 1) < 1e-5
    # The validation and test splits are mapped with the same numbers, so they are not exactly
    # centred.
    assert abs(data.val.x.mean().item()) > 1e-4 and abs(data.test.x.mean().item()) > 1e-4


def test_val_split_is_seeded_and_disjoint(mnist_dir):
    root, _ = mnist_dir
    a = load_task("smnist", root, val_fraction=0.25, seed=0, download=False)
    b = load_task("smnist", root, val_fraction=0.25, seed=0, download=False)
    c = load_task("smnist", root, val_fraction=0.25, seed=1, download=False)
    train, val = set(a.train.index.tolist()), set(a.val.index.tolist())
    assert not train & val and train | val == set(range(N_TRAIN))
    assert torch.equal(a.train.index, b.train.index) and torch.equal(a.val.x, b.val.x)
    assert set(c.val.index.tolist()) != val
    assert torch.equal(a.test.index, c.test.index)  # the test set does not depend on the seed
    no_val = load_task("smnist", root, val_fraction=0.0, download=False)
    assert len(no_val.val) == 0 and no_val.val.x.shape == (0, 784, 1)
    assert len(no_val.train) == N_TRAIN


def test_limit_takes_a_shuffled_prefix(mnist_dir):
    root, _ = mnist_dir
    full = load_task("smnist", root, val_fraction=0.2, seed=4, download=False)
    small = load_task("smnist", root, val_fraction=0.2, seed=4, limit=10, download=False)
    assert (len(small.train), len(small.val), len(small.test)) == (8, 2, 10)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.cat([small.val.index, small.train.index]), order[:10])
    assert torch.equal(small.test.index, torch.arange(10))
    assert torch.equal(full.val.index, order[:8])
    assert len(load_task("smnist", root, limit=1000, download=False).test) == N_TEST


def test_bad_arguments(mnist_dir):
    root, _ = mnist_dir
    with pytest.raises(ImssaError) as info:
        load_task("cifar10")
    assert "cifar10" in str(info.value) and all(t in str(info.value) for t in TASKS)
    for bad in (-0.1, 1.0, 1.5, float("nan"), "0.1"):
        with pytest.raises(ImssaError, match="val_fraction"):
            load_task("sdigits", val_fraction=bad)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ImssaError, match="limit"):
            load_task("sdigits", limit=bad)
    with pytest.raises(ImssaError, match="seed"):
        load_task("sdigits", seed=1.5)
    numpy_args = load_task("sdigits", seed=np.int64(2), limit=np.int64(50),
                           val_fraction=np.float32(0.2))
    assert (len(numpy_args.train), len(numpy_args.val)) == (40, 10)
    with pytest.raises(ImssaError, match="leaves none to train on"):
        load_task("smnist", root, val_fraction=0.9, limit=1, download=False)


# --- sdigits ----------------------------------------------------------------------------------
def test_sdigits_fixed_stratified_test_split():
    from sklearn.datasets import load_digits

    digits = load_digits()
    a = load_task("sdigits", seed=0)
    b = load_task("sdigits", seed=7, val_fraction=0.2)
    assert (a.d_input, a.seq_len, a.n_classes) == (1, 64, 10)
    assert torch.equal(a.test.index, b.test.index) and torch.equal(a.test.y, b.test.y)
    np.testing.assert_array_equal(a.test.index.numpy(), sdigits_test_indices())
    counts = np.bincount(digits.target, minlength=10)
    test_counts = np.bincount(a.test.y.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts, [round(0.2 * c) for c in counts])
    assert len(a.test) == 359
    everything = torch.cat([a.train.index, a.val.index, a.test.index]).sort().values
    assert torch.equal(everything, torch.arange(len(digits.target)))
    assert len(a.val) == round(0.1 * (len(digits.target) - 359))
    c = load_task("sdigits", seed=1)
    assert set(a.val.index.tolist()) != set(c.val.index.tolist())
    for split in (a.train, a.val, a.test):
        expected = torch.from_numpy(digits.images[split.index.numpy()].reshape(-1, 64, 1) / 16)
        torch.testing.assert_close(unnormalize(a, split), expected.float(), atol=2e-6, rtol=0)
        np.testing.assert_array_equal(split.y.numpy(), digits.target[split.index.numpy()])
    assert abs(a.train.x.mean().item()) < 1e-5 and abs(a.train.x.std().item() - 1) < 1e-3


# --- FSDD -------------------------------------------------------------------------------------
def test_read_wav_formats(tmp_path):
    cases = {
        "int16": (np.array([0, 16384, -32768, 32767], dtype=np.int16), [0, 0.5, -1, 32767 / 32768]),
        "uint8": (np.array([128, 192, 0, 255], dtype=np.uint8), [0, 0.5, -1, 127 / 128]),
        "int32": (np.array([0, 2**30, -(2**31)], dtype=np.int32), [0, 0.5, -1]),
        "float32": (np.array([0.25, -0.5], dtype=np.float32), [0.25, -0.5]),
        "stereo": (np.array([[16384, 0], [-32768, 0]], dtype=np.int16), [0.25, -0.5]),
    }
    for name, (pcm, expected) in cases.items():
        wavfile.write(tmp_path / f"{name}.wav", 8000, pcm)
        audio = fsdd_module.read_wav(tmp_path / f"{name}.wav")
        assert audio.dtype == np.float32
        np.testing.assert_allclose(audio, expected, atol=1e-7)
    wavfile.write(tmp_path / "cd.wav", 44100, np.zeros(10, dtype=np.int16))
    with pytest.raises(ImssaError, match="44100 Hz"):
        fsdd_module.read_wav(tmp_path / "cd.wav")
    broken = tmp_path / "3_bob_0.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(ImssaError, match=str(broken)):
        fsdd_module.read_wav(broken)


def test_mel_filterbank_shape_and_order():
    fb = mel_filterbank()
    assert fb.shape == (32, 129) and fb.dtype == torch.float32
    assert fb.min() >= 0 and fb.max() <= 1
    assert (fb.sum(dim=1) > 0).all(), "every band must cover at least one FFT bin"
    peaks = fb.argmax(dim=1)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] > peaks[0]


def test_log_mel_matches_direct_dft():
    cfg = LogMelConfig()
    rng = np.random.default_rng(2)
    signal = rng.normal(scale=0.1, size=cfg.n_samples)
    out = log_mel_spectrogram(torch.from_numpy(signal)[None], cfg)[0]
    assert out.shape == (63, 32) == (cfg.n_frames, cfg.n_mels)
    padded = np.pad(signal, cfg.n_fft // 2)  # centred frames, zero padding
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)  # periodic Hann
    fb = mel_filterbank(cfg).double().numpy()
    for t in (0, 1, 31, 62):
        frame = padded[t * cfg.hop: t * cfg.hop + cfg.n_fft] * window
        power = np.abs(np.fft.rfft(frame)) ** 2
        np.testing.assert_allclose(out[t].numpy(), np.log(fb @ power + cfg.eps), atol=1e-4)


def test_log_mel_tone_lands_in_nearest_band():
    cfg = LogMelConfig()
    t = np.arange(cfg.n_samples) / cfg.sample_rate
    out = log_mel_spectrogram(torch.from_numpy(np.sin(2 * np.pi * 1000 * t))[None], cfg)[0]
    centres = fsdd_module.mel_to_hz(np.linspace(0, fsdd_module.hz_to_mel(4000), 34))[1:-1]
    assert out[10:50].mean(dim=0).argmax().item() == np.argmin(np.abs(centres - 1000))
    # Crop and pad: a longer signal keeps its start, a shorter one is zero-padded.
    long = torch.from_numpy(np.sin(2 * np.pi * 1000 * np.arange(12000) / 8000))[None]
    torch.testing.assert_close(log_mel_spectrogram(long, cfg)[0], out)
    short = log_mel_spectrogram(torch.ones(1, 100), cfg)[0]
    torch.testing.assert_close(short[-1], torch.full((32,), float(np.log(cfg.eps))))


def test_fsdd_split_by_take(fsdd_dir):
    data = load_task("fsdd", fsdd_dir, val_fraction=0.25, seed=0)
    rec = load_fsdd_raw(fsdd_dir)
    assert len(rec.files) == 10 * len(SPEAKERS) * N_TAKES
    assert (data.d_input, data.seq_len, data.n_classes) == (32, 63, 10)
    assert (len(data.train), len(data.val), len(data.test)) == (30, 10, 100)
    assert (rec.takes[data.test.index.numpy()] < 5).all()
    assert (rec.takes[torch.cat([data.train.index, data.val.index]).numpy()] >= 5).all()
    for split in (data.train, data.val, data.test):
        names = [rec.files[i].name for i in split.index.tolist()]
        assert split.y.tolist() == [int(n[0]) for n in names]
    # Sorted by (take, speaker, digit): any prefix of the test set mixes all digits.
    assert data.test.y[:10].tolist() == list(range(10))
    assert data.norm_mean.shape == data.norm_std.shape == (32,)
    torch.testing.assert_close(data.train.x.mean(dim=(0, 1)), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.train.x.std(dim=(0, 1), unbiased=False), torch.ones(32),
                               atol=1e-4, rtol=0)
    # int16 and uint8 recordings of the same tone give nearly the same features.
    a = rec.files.index(fsdd_dir / "recordings" / "4_alice_6.wav")
    b = rec.files.index(fsdd_dir / "recordings" / "4_bob_6.wav")
    diff = rec.waves[a][:4000] - rec.waves[b][:4000]  # same tone, own noise, 8 vs 16 bits
    assert np.sqrt(np.mean(diff**2)) < 0.03
    feats = log_mel_spectrogram(torch.from_numpy(np.stack([rec.waves[i][:4000] for i in (a, b)])))
    bands = feats[:, 5:25].mean(dim=1).argmax(dim=-1)  # strongest band of each recording
    assert bands[0] == bands[1]


@pytest.mark.parametrize("layout", ["recordings", "fsdd/recordings", "."])
def test_fsdd_layouts(tmp_path, layout):
    folder = tmp_path / layout
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(3):
        wavfile.write(folder / f"{digit}_eve_{digit + 4}.wav", 8000, np.zeros(800, np.int16))
    rec = load_fsdd_raw(tmp_path)
    assert [f.name for f in rec.files] == ["0_eve_4.wav", "1_eve_5.wav", "2_eve_6.wav"]
    assert rec.takes.tolist() == [4, 5, 6] and rec.speakers == ["eve"] * 3


def test_fsdd_errors(tmp_path):
    with pytest.raises(ImssaError) as info:
        load_task("fsdd", tmp_path / "nothing")
    assert all(s in str(info.value) for s in ("IMSSA_DATA_DIR", "--data-dir", "recordings"))
    wavfile.write(tmp_path / "hello.wav", 8000, np.zeros(10, np.int16))
    with pytest.raises(ImssaError, match="hello.wav"):
        load_fsdd_raw(tmp_path)
    (tmp_path / "hello.wav").unlink()
    (tmp_path / "7_bob_3.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(ImssaError, match="7_bob_3.wav"):
        load_task("fsdd", tmp_path)


# --- the real data, when present ---------------------------------------------------------------
needs_mnist = pytest.mark.skipif(not (REAL_DATA / "mnist").is_dir(),
                                 reason=f"no MNIST at {REAL_DATA / 'mnist'} (set IMSSA_TEST_DATA)")
needs_fsdd = pytest.mark.skipif(not (REAL_DATA / "fsdd" / "recordings").is_dir(),
                                reason=f"no FSDD at {REAL_DATA / 'fsdd'} (set IMSSA_TEST_DATA)")


@needs_mnist
def test_real_mnist_class_counts():
    raw = load_mnist_raw(REAL_DATA, download=False)
    assert raw.train_images.shape == (60000, 28, 28) and raw.test_images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(raw.train_labels),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(np.bincount(raw.test_labels),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


@needs_mnist
def test_real_smnist_task():
    data = load_task("smnist", REAL_DATA / "mnist", download=False)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.train.x.shape == (54000, 784, 1)
    assert abs(data.norm_mean.item() - 0.1307) < 2e-3 and abs(data.norm_std.item() - 0.3081) < 2e-3
    assert abs(data.train.x.mean().item()) < 1e-4


@needs_fsdd
def test_real_fsdd_split():
    data = load_task("fsdd", REAL_DATA, val_fraction=0.0)
    assert (len(data.train), len(data.test)) == (2700, 300)
    assert data.train.x.shape == (2700, 63, 32)
    np.testing.assert_array_equal(np.bincount(data.test.y.numpy()), [30] * 10)
    np.testing.assert_array_equal(np.bincount(data.train.y.numpy()), [270] * 10)


@pytest.mark.parametrize("takes,missing", [((0, 1), "no training (takes 5 and later)"),
                                           ((5, 6), "no test (takes 0-4)")])
def test_fsdd_without_one_side_of_the_split_fails_at_load(tmp_path, takes, missing):
    """Checked when the data loads, so a training run never starts on a folder it cannot test."""
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    for digit in range(10):
        for take in takes:
            wavfile.write(tmp_path / f"{digit}_ann_{take}.wav", 8000, pcm)
    with pytest.raises(ImssaError, match=missing.replace("(", r"\(").replace(")", r"\)")):
        load_task("fsdd", tmp_path)


def test_corrupt_wav_names_the_file(tmp_path):
    good = tmp_path / "good.wav"
    wavfile.write(good, 8000, np.zeros(100, np.int16))
    data = good.read_bytes()
    for i, broken in enumerate((data[:30], data[:12] + b"junk" * 5, b"RIFF" + bytes(20))):
        path = tmp_path / f"{i}_bob_{i}.wav"
        path.write_bytes(broken)
        with pytest.raises(ImssaError, match=f"cannot read WAV file {path}"):
            fsdd_module.read_wav(path)


def test_sdigits_without_validation_has_an_empty_val_split():
    """val_fraction=0 gives an empty validation split of the right shape, not a reshape error."""
    data = load_task("sdigits", val_fraction=0.0, limit=120)
    assert data.val.x.shape == (0, 64, 1) and data.val.y.shape == (0,)
    assert data.train.x.shape == (120, 64, 1)
