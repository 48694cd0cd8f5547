// kiln/nodes/tts_engine.hpp — the `tts_engine` node kind: text in, 16-bit mono audio out.
// The default node `torch` lives in plugins/tts_torch; `espeak` (plugins/tts_espeak) is gated
// against it. The kernel's tools `tts.synthesize` / `tts.voices`, `POST /v1/audio/speech` and
// `kiln say` all speak through whichever node `nodes.tts_engine` selects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "kiln/result.hpp"
#include "kiln/tool.hpp"

namespace kiln::nodes {

// Error codes of the kind, besides error_code::kInvalidInput (empty text, invalid UTF-8, control
// characters, speed out of range) and error_code::kInternal.
namespace tts_error {
inline constexpr const char* kInputTooLarge = "input_too_large";       // details: {max_chars}
inline constexpr const char* kUnknownVoice = "unknown_voice";          // details: {voices: [...]}
inline constexpr const char* kVoiceUnavailable = "voice_unavailable";  // failed to load
}  // namespace tts_error

struct VoiceInfo {
  std::string id;  // what requests name, e.g. "kiln-slt-small"
  std::string language;
  int sample_rate = 0;
  std::string description;
  std::string phoneme_type;  // "flite" | "espeak" | ... (engine-specific)
  std::string state;         // "loaded" | "available" (loads on first use) | "failed"
  std::string error;         // why it failed, when state == "failed"
  bool is_default = false;
  boost::json::object to_json() const {
    boost::json::object o{{"id", id},
                          {"language", language},
                          {"sample_rate", sample_rate},
                          {"description", description},
                          {"phoneme_type", phoneme_type},
                          {"state", state},
                          {"default", is_default}};
    if (!error.empty()) o["error"] = error;
    return o;
  }
};

struct SpeechRequest {
  std::string text;    // UTF-8; markup tags are dropped (not interpreted)
  std::string voice;   // empty: the engine's default voice
  double speed = 1.0;  // 0.25 .. 4.0; > 1 is faster (length scale = 1 / speed)
};

// One piece of a streamed synthesis: the audio of one sentence.
struct AudioChunk {
  const std::vector<std::int16_t>& samples;
  int sample_rate;
  std::size_t index;       // 0-based sentence number
  std::size_t count;       // sentences in the request
  std::string_view voice;  // the voice that spoke (the default one after a fallback)
};
// Receives each sentence's audio as soon as it exists; returning false stops the synthesis
// (the result is then an error with code error_code::kUnavailable "stopped").
using ChunkSink = std::function<bool(const AudioChunk&)>;

struct Speech {
  std::vector<std::int16_t> samples;  // the whole utterance (empty when streamed to a sink)
  int sample_rate = 0;
  std::string voice;
  std::size_t sentences = 0;
  double audio_seconds = 0;
};

class TtsEngine {
 public:
  static constexpr const char* kKind = "tts_engine";
  static constexpr const char* kDefaultNode = "torch";
  // 2: the Speech result says what it spoke (voice, sentences, audio_seconds).
  static constexpr unsigned kContractVersion = 2;
  // Largest input, in bytes of UTF-8, every node accepts (OpenAI's limit is 4096 characters).
  static constexpr std::size_t kDefaultMaxChars = 4096;

  virtual ~TtsEngine() = default;

  virtual std::vector<VoiceInfo> voices() const = 0;
  // Same request → the same samples. Safe to call from several threads at once.
  virtual Result<Speech, ToolError> synthesize(const SpeechRequest& request,
                                               const ChunkSink& sink = {}) const = 0;
  // Loads a voice now (instead of on first use) / frees it. Unknown voice → kUnknownVoice.
  virtual Result<VoiceInfo, ToolError> load_voice(const std::string& id) const = 0;
  virtual Result<VoiceInfo, ToolError> unload_voice(const std::string& id) const = 0;
};

// Kind-wide settings (`tts_engine:` in config).
struct TtsSettings {
  std::size_t max_chars = TtsEngine::kDefaultMaxChars;
  static TtsSettings from_json(const boost::json::object& kind_config) {
    TtsSettings s;
    if (auto* m = kind_config.if_contains("max_chars"); m && m->is_int64() && m->as_int64() > 0)
      s.max_chars = static_cast<std::size_t>(m->as_int64());
    return s;
  }
};

inline Unexpected<ToolError> tts_failure(std::string code, std::string message,
                                         boost::json::value details = nullptr) {
  return Unexpected<ToolError>{
      ToolError{std::move(code), std::move(message), false, std::move(details)}};
}

}  // namespace kiln::nodes
