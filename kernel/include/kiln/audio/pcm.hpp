// kiln/audio/pcm.hpp — 16-bit mono PCM: little-endian bytes, RIFF/WAVE files and streams, and
// float → int16 with clipping. Header-only; used by the kernel's speech responses and by TTS
// plugins (kiln_tts_teacher writes its training audio with it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::audio {

inline void put_le(std::string& out, std::uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

// A WAV header for `samples` 16-bit mono samples.
inline std::string wav_header(std::uint32_t samples, int sample_rate) {
  std::string h;
  const std::uint32_t data = samples * 2;
  h += "RIFF";
  put_le(h, 36 + data, 4);
  h += "WAVEfmt ";
  put_le(h, 16, 4);
  put_le(h, 1, 2);  // PCM
  put_le(h, 1, 2);  // mono
  put_le(h, static_cast<std::uint32_t>(sample_rate), 4);
  put_le(h, static_cast<std::uint32_t>(sample_rate) * 2, 4);
  put_le(h, 2, 2);
  put_le(h, 16, 2);
  h += "data";
  put_le(h, data, 4);
  return h;
}

// The header of a WAV stream whose length is not known yet (RIFF and data sizes 0xFFFFFFFF, as
// streaming servers write it).
inline std::string wav_stream_header(int sample_rate) {
  std::string h = wav_header(0, sample_rate);
  for (std::size_t i : {4u, 5u, 6u, 7u, 40u, 41u, 42u, 43u}) h[i] = static_cast<char>(0xFF);
  return h;
}

inline std::string pcm_bytes(const std::vector<std::int16_t>& samples) {
  std::string out;
  out.reserve(samples.size() * 2);
  for (std::int16_t s : samples) put_le(out, static_cast<std::uint16_t>(s), 2);
  return out;
}

inline std::string wav_bytes(const std::vector<std::int16_t>& samples, int sample_rate) {
  return wav_header(static_cast<std::uint32_t>(samples.size()), sample_rate) + pcm_bytes(samples);
}

// Float audio in [-1, 1] to int16; values outside are clipped.
inline std::vector<std::int16_t> to_int16(const float* x, std::size_t n) {
  std::vector<std::int16_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = std::clamp(x[i], -1.0f, 1.0f);
    out[i] = static_cast<std::int16_t>(std::lrint(v * 32767.0f));
  }
  return out;
}

}  // namespace kiln::audio
