// Encodes 16-bit mono PCM for speech responses: wav and pcm by hand, flac / mp3 / opus (in Ogg)
// through libsndfile. Opus only takes 8, 12, 16, 24 or 48 kHz: other rates are resampled to
// 48 kHz (linear interpolation) first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/audio/pcm.hpp"  // wav_stream_header, pcm_bytes for streamed responses

namespace kiln::audio {

struct Encoded {
  std::string bytes;
  std::string
      media_type;  // "audio/wav", "audio/pcm;rate=16000;…", "audio/flac", "audio/mpeg", "audio/ogg"
};

// The formats this build encodes, in OpenAI's names: wav pcm flac mp3 opus (the latter three when
// libsndfile can write them).
std::vector<std::string> supported_formats();

// nullopt + *error when the format is unknown or the encoder fails.
std::optional<Encoded> encode(const std::vector<std::int16_t>& samples, int sample_rate,
                              std::string_view format, std::string* error);

// 16-bit mono PCM read back from a RIFF/WAVE file of that kind (as wav_bytes writes it; other
// chunks are skipped); nullopt and *error saying why for anything else.
struct Pcm {
  std::vector<std::int16_t> samples;
  int sample_rate = 0;
};
std::optional<Pcm> read_wav(std::string_view bytes, std::string* error);

// `in` at `from` Hz as `to` Hz, by linear interpolation (fine for raising the rate: speech from
// a 16 kHz voice as OpenAI's 24 kHz pcm, or as Opus's 48 kHz).
std::vector<std::int16_t> resample(const std::vector<std::int16_t>& in, int from, int to);

// OpenAI's raw pcm is 24 kHz: the OpenAI-compatible route gives pcm at this rate.
inline constexpr int kOpenAiPcmRate = 24000;

// Media type of a format, for headers of streamed responses ("" if unknown).
std::string media_type(std::string_view format, int sample_rate);

}  // namespace kiln::audio
