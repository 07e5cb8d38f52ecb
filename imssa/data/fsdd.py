"""The Free Spoken Digit Dataset (Jackson et al., github.com/Jakobovski/free-spoken-digit-dataset)
as log-mel spectrogram sequences.

Recordings ``{digit}_{speaker}_{take}.wav`` are mono 8 kHz PCM. Each is cropped or zero-padded to
1 s, cut into 32 ms Hann frames every 16 ms (centred frames, zero padding at both ends, so 63
frames), and turned into 32 log-mel energies ``log(mel power + 1e-6)``. The mel filterbank uses
the HTK mel scale, mel = 2595 log10(1 + f / 700), with triangles of peak 1 (as torchaudio's
default). The standard split keeps takes 0-4 of every speaker and digit as the test set.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.io import wavfile  # type: ignore[import-untyped]
from torch import Tensor

from imssa.data.common import DATA_DIR_ENV, resolve_data_dir
from imssa.errors import ImssaError

SAMPLE_RATE = 8000
TEST_TAKES = 5  # takes 0 .. TEST_TAKES - 1 form the test set
FILE_PATTERN = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)\.wav$")
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"


@dataclass(frozen=True, kw_only=True)
class LogMelConfig:
    """Log-mel spectrogram settings; the defaults give 63 frames x 32 bands for 1 s at 8 kHz."""

    sample_rate: int = SAMPLE_RATE
    n_samples: int = SAMPLE_RATE  # every recording is cropped or zero-padded to this length
    n_fft: int = 256  # window length, 32 ms
    hop: int = 128  # 16 ms
    n_mels: int = 32
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_samples", "n_fft", "hop", "n_mels"):
            if getattr(self, name) < 1:
                raise ImssaError(f"LogMelConfig.{name} must be >= 1, got {getattr(self, name)}")
        top = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0.0 <= self.f_min < top <= self.sample_rate / 2:
            raise ImssaError(f"LogMelConfig needs 0 <= f_min < f_max <= sample_rate / 2, got "
                             f"f_min={self.f_min}, f_max={top}, sample_rate={self.sample_rate}")
        if self.eps <= 0:
            raise ImssaError(f"LogMelConfig.eps must be > 0, got {self.eps}")

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop


@dataclass(frozen=True)
class FsddRecordings:
    """The recordings of a folder, sorted by (take, speaker, digit) so any prefix mixes digits.

    Attributes:
        waves: one float32 array in [-1, 1] per recording (lengths differ).
        digits, takes: (n,) int64 label and take number per recording.
        speakers: speaker name per recording.
        files: the WAV file per recording.
    """

    waves: list[np.ndarray]
    digits: np.ndarray
    speakers: list[str]
    takes: np.ndarray
    files: list[Path]


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: LogMelConfig = LogMelConfig()) -> Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1), evenly spaced on the HTK mel scale, peak 1."""
    f_max = cfg.sample_rate / 2 if cfg.f_max is None else cfg.f_max
    freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)  # FFT bin centres (Hz)
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(f_max), cfg.n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M 1)
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)  # (M F)
    return torch.from_numpy(weights.astype(np.float32))


def log_mel_spectrogram(waves: Tensor, cfg: LogMelConfig = LogMelConfig(),
                        batch: int = 512) -> Tensor:
    """Log-mel sequences of equal-length signals.

    Args:
        waves: (B, T) float signals; T is cropped or zero-padded to cfg.n_samples.
        cfg: spectrogram settings.
        batch: signals per STFT call, to bound memory.

    Returns:
        (B, n_frames, n_mels) float32, log(mel power + eps).
    """
    waves = fit_length(waves.to(torch.float32), cfg.n_samples)
    window = torch.hann_window(cfg.n_fft, periodic=True)
    fb = mel_filterbank(cfg)  # (M F)
    out = []
    for chunk in waves.split(batch):
        spec = torch.stft(chunk, n_fft=cfg.n_fft, hop_length=cfg.hop, win_length=cfg.n_fft,
                          window=window, center=True, pad_mode="constant",
                          return_complex=True)  # (B F frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.einsum("mf,bft->btm", fb, power)  # (B frames M)
        out.append(torch.log(mel + cfg.eps))
    if not out:
        return torch.empty(0, cfg.n_frames, cfg.n_mels)
    return torch.cat(out)


def fit_length(waves: Tensor, n_samples: int) -> Tensor:
    """Crop (keep the start) or zero-pad at the end the last axis to n_samples."""
    t = waves.shape[-1]
    if t >= n_samples:
        return waves[..., :n_samples]
    return torch.nn.functional.pad(waves, (0, n_samples - t))


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A PCM WAV file as float32 in [-1, 1] (channels averaged).

    int16, int32 and uint8 PCM are scaled by their full range; float files are taken as they are.
    A file that does not parse or has another sample rate raises ImssaError naming it.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks: harmless
            rate, data = wavfile.read(path)
    except (OSError, ValueError, EOFError, struct.error, UnboundLocalError, MemoryError,
            IndexError, TypeError) as err:  # scipy raises all of these on corrupt files
        raise ImssaError(f"cannot read WAV file {path}: {err or type(err).__name__}; the file is "
                         "corrupt or not a WAV file") from err
    if rate != sample_rate:
        raise ImssaError(f"WAV file {path} has sample rate {rate} Hz; FSDD recordings are "
                         f"{sample_rate} Hz (resample it, e.g. with sox)")
    if data.dtype == np.uint8:
        audio = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype == np.int16:
        audio = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        audio = (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif data.dtype in (np.float32, np.float64):
        audio = data.astype(np.float32)
    else:
        raise ImssaError(f"WAV file {path} holds {data.dtype} samples; expected PCM uint8, "
                         "int16, int32 or float")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return audio


def find_fsdd_dir(root: Path) -> Path | None:
    """The recordings folder: ``root/recordings``, ``root/fsdd/recordings`` or root itself."""
    for folder in (root / "recordings", root / "fsdd" / "recordings", root):
        if folder.is_dir() and any(folder.glob("*.wav")):
            return folder
    return None


def load_fsdd_raw(data_dir: str | Path | None = None) -> FsddRecordings:
    """Read every ``{digit}_{speaker}_{take}.wav`` of the FSDD folder.

    Args:
        data_dir: the folder (see :func:`imssa.data.resolve_data_dir`); default
            ``$IMSSA_DATA_DIR`` or ``~/.cache/imssa/fsdd``.
    """
    root = resolve_data_dir(data_dir, "fsdd")
    folder = find_fsdd_dir(root)
    if folder is None:
        raise ImssaError(
            f"FSDD recordings not found: no .wav files in {root / 'recordings'}, "
            f"{root / 'fsdd' / 'recordings'} or {root}. Put the dataset's recordings/ folder "
            f"(the {{digit}}_{{speaker}}_{{take}}.wav files from {FSDD_URL}) into {root}, or "
            f"point imssa at the folder holding it with --data-dir DIR or the {DATA_DIR_ENV} "
            "environment variable")
    entries = []
    for path in folder.glob("*.wav"):
        match = FILE_PATTERN.match(path.name)
        if match is None:
            raise ImssaError(f"FSDD file {path} does not follow the naming "
                             "{digit}_{speaker}_{take}.wav, so its label is unknown; "
                             "rename or remove it")
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        entries.append((take, speaker, digit, path))
    entries.sort()
    return FsddRecordings(
        waves=[read_wav(e[3]) for e in entries],
        digits=np.array([e[2] for e in entries], dtype=np.int64),
        speakers=[e[1] for e in entries],
        takes=np.array([e[0] for e in entries], dtype=np.int64),
        files=[e[3] for e in entries],
    )


def stack_waves(waves: list[np.ndarray], n_samples: int) -> Tensor:
    """Recordings of any length -> (n, n_samples) float32, cropped or zero-padded at the end."""
    out = torch.zeros(len(waves), n_samples)
    for i, w in enumerate(waves):
        k = min(len(w), n_samples)
        out[i, :k] = torch.from_numpy(w[:k])
    return out
