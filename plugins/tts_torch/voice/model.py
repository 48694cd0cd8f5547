"""The embedded voice's model: a small FastSpeech-style acoustic model and a Griffin-Lim vocoder
in one TorchScript-able module with Piper's inference signature.

    ids [1,T] --embedding--> conv encoder + BiGRU --> duration predictor (log frames)
            --length regulator (+ position in phone, log duration)--> dilated conv decoder
            --> 80-bin log-mel --> conv postnet --> 257-bin log-magnitude --> fast Griffin-Lim

Piper's signature: forward(text, text_lengths, sid, noise_scale, length_scale, noise_w) returns a
tuple whose first element is float audio [1, 1, samples]. This model is deterministic: sid,
noise_scale and noise_w are accepted and ignored; length_scale scales the durations.
"""
from typing import List, Tuple

import torch
from torch import nn
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 128
WIN = 512
N_MELS = 80
N_LINEAR = N_FFT // 2 + 1


class Depthwise(nn.Module):
    """Depthwise 1-D convolution as a sum of shifted, per-channel scaled copies: CPU builds of
    torch fall back to a slow generic kernel for grouped, dilated convolutions."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.kernel = kernel
        self.dilation = dilation
        self.weight = nn.Parameter(torch.randn(channels, kernel) / kernel ** 0.5)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.dilation * (self.kernel - 1) // 2
        xp = F.pad(x, (pad, pad))
        t = x.size(2)
        y = self.bias.view(1, -1, 1).expand_as(x)
        for k in range(self.kernel):
            off = k * self.dilation
            y = y + xp[:, :, off:off + t] * self.weight[:, k].view(1, -1, 1)
        return y


class ConvBlock(nn.Module):
    """Residual conv → ReLU → LayerNorm → dropout over [B, C, T]. Separable (depthwise then
    pointwise, as LightSpeech) where it runs per frame: ~5x fewer operations at the same width."""

    def __init__(self, channels: int, kernel: int, dilation: int = 1, dropout: float = 0.1,
                 separable: bool = False):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        if separable:
            self.conv = nn.Sequential(Depthwise(channels, kernel, dilation),
                                      nn.Conv1d(channels, channels, 1))
        else:
            self.conv = nn.Sequential(
                nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation))
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x * mask))
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        return (x + self.dropout(y)) * mask


class Acoustic(nn.Module):
    def __init__(self, num_symbols: int, enc: int = 256, dec: int = 256, post: int = 256):
        super().__init__()
        self.embed = nn.Embedding(num_symbols, enc)
        self.enc_convs = nn.ModuleList([ConvBlock(enc, 5) for _ in range(3)])
        self.enc_rnn = nn.GRU(enc, enc // 2, batch_first=True, bidirectional=True)
        self.dur = nn.ModuleList([ConvBlock(enc, 3), ConvBlock(enc, 3)])
        self.dur_out = nn.Linear(enc, 1)
        self.dec_in = nn.Conv1d(enc + 2, dec, 1)
        self.dec = nn.ModuleList([ConvBlock(dec, 5, d, 0.05, True) for d in (1, 2, 4, 1, 2, 4)])
        self.mel_out = nn.Conv1d(dec, N_MELS, 1)
        self.post_in = nn.Conv1d(N_MELS + dec, post, 1)
        self.post = nn.ModuleList([ConvBlock(post, 5, d, 0.05, True) for d in (1, 2)])
        self.lin_out = nn.Conv1d(post, N_LINEAR, 1)

    def encode(self, ids: torch.Tensor, id_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """ids [B,T], id_mask [B,1,T] → encoding [B,C,T], log-duration prediction [B,T]."""
        x = self.embed(ids).transpose(1, 2) * id_mask
        for block in self.enc_convs:
            x = block(x, id_mask)
        x, _ = self.enc_rnn(x.transpose(1, 2))
        x = x.transpose(1, 2) * id_mask
        d = x
        for block in self.dur:
            d = block(d, id_mask)
        logd = self.dur_out(d.transpose(1, 2)).squeeze(2) * id_mask.squeeze(1)
        return x, logd

    def decode(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """frames [B,C+2,F] → log-mel [B,80,F], log-magnitude [B,257,F] (normalized units)."""
        h = self.dec_in(frames) * frame_mask
        for block in self.dec:
            h = block(h, frame_mask)
        mel = self.mel_out(h) * frame_mask
        p = F.relu(self.post_in(torch.cat([mel, h], 1))) * frame_mask
        for block in self.post:
            p = block(p, frame_mask)
        lin = self.lin_out(p) * frame_mask
        return mel, lin


def regulate(enc: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """One sequence: enc [C,T], integer durations [T] → frames [C+2, F] with, per frame, the
    position inside its symbol (0..1) and the symbol's log duration."""
    reps = durations.clamp(min=0)
    idx = torch.repeat_interleave(torch.arange(reps.size(0)), reps)
    x = enc[:, idx]
    starts = torch.cumsum(reps, 0) - reps
    pos_in = torch.arange(idx.size(0)) - starts[idx]
    d = reps[idx].to(enc.dtype)
    frac = (pos_in.to(enc.dtype) + 0.5) / d
    logd = torch.log(d)
    return torch.cat([x, frac.unsqueeze(0), logd.unsqueeze(0)], 0)


class Vocoder(nn.Module):
    """Fast Griffin-Lim (with momentum) over the linear magnitude."""

    def __init__(self, iterations: int = 16, momentum: float = 0.99, power: float = 1.3):
        super().__init__()
        self.iterations = iterations
        self.momentum = momentum
        self.power = power
        self.n_fft = N_FFT
        self.hop = HOP
        self.win = WIN
        self.register_buffer("window", torch.hann_window(WIN), persistent=False)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        """mag [257, F] → audio [samples]."""
        mag = mag.pow(self.power)
        length = (mag.size(1) - 1) * self.hop
        angles = torch.ones_like(mag).to(torch.complex64)
        prev = torch.zeros_like(angles)
        audio = torch.zeros(length)
        for _ in range(self.iterations):
            audio = torch.istft(mag * angles, self.n_fft, self.hop, self.win, self.window,
                                center=True, length=length)
            rebuilt = torch.stft(audio, self.n_fft, self.hop, self.win, self.window, center=True,
                                 pad_mode="reflect", normalized=False, onesided=True,
                                 return_complex=True)
            angles = rebuilt - prev * (self.momentum / (1.0 + self.momentum))
            angles = angles / (angles.abs() + 1e-8)
            prev = rebuilt
        return torch.istft(mag * angles, self.n_fft, self.hop, self.win, self.window, center=True,
                           length=length)


class Voice(nn.Module):
    """The exported module: Piper's signature, text ids in, audio out."""

    def __init__(self, acoustic: Acoustic, lin_mean: torch.Tensor, lin_std: torch.Tensor,
                 iterations: int = 16):
        super().__init__()
        self.acoustic = acoustic
        self.vocoder = Vocoder(iterations)
        self.register_buffer("lin_mean", lin_mean.clone())
        self.register_buffer("lin_std", lin_std.clone())

    def forward(self, text: torch.Tensor, text_lengths: torch.Tensor, sid: torch.Tensor,
                noise_scale: torch.Tensor, length_scale: torch.Tensor,
                noise_w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        t = int(text_lengths[0].item())
        ids = text[:, :t]
        mask = torch.ones(1, 1, t)
        enc, logd = self.acoustic.encode(ids, mask)
        frames_f = (torch.exp(logd[0]) - 1.0).clamp(min=0.0) * length_scale[0]
        durations = torch.round(frames_f).to(torch.long)
        if int(durations.sum().item()) < 2:
            durations[0] = durations[0] + 2
        frames = regulate(enc[0], durations).unsqueeze(0)
        fmask = torch.ones(1, 1, frames.size(2))
        _, lin = self.acoustic.decode(frames, fmask)
        logmag = lin[0] * self.lin_std.unsqueeze(1) + self.lin_mean.unsqueeze(1)
        audio = self.vocoder(torch.exp(logmag))
        peak = audio.abs().max()
        if float(peak.item()) > 0.95:
            audio = audio * (0.95 / peak)
        return audio.view(1, 1, -1), durations.view(1, -1)


def spectra(audio: torch.Tensor, mel_basis: torch.Tensor, window: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """audio [samples] → (log-mel [80, F], log-magnitude [257, F]) with F = samples // HOP + 1."""
    spec = torch.stft(audio, N_FFT, HOP, WIN, window, center=True, pad_mode="reflect",
                      normalized=False, onesided=True, return_complex=True)
    mag = spec.abs()
    mel = torch.log(torch.clamp(mel_basis @ mag, min=1e-5))
    return mel, torch.log(torch.clamp(mag, min=1e-5))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = 0.0, fmax: float = 8000.0) -> torch.Tensor:
    """Slaney-style triangular mel filters [n_mels, n_fft//2+1]."""
    def hz_to_mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    mels = torch.linspace(hz_to_mel(torch.tensor(fmin)), hz_to_mel(torch.tensor(fmax)), n_mels + 2)
    hz = mel_to_hz(mels)
    fb = torch.zeros(n_mels, n_fft // 2 + 1)
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / (c - lo)
        down = (hi - freqs) / (hi - c)
        fb[i] = torch.clamp(torch.minimum(up, down), min=0.0) * (2.0 / (hi - lo))
    return fb
