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

// Media type of a format, for headers of streamed responses ("" if unknown).
std::string media_type(std::string_view format, int sample_rate);

}  // namespace kiln::audio
