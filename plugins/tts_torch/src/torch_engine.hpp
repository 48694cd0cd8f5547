// tts_engine/torch: Piper-compatible voices (voice.json + TorchScript model.pt) run with
// torch::jit. The only translation unit of the plugin that includes LibTorch.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/host.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "voice_config.hpp"

namespace kiln::tts {

struct TorchEngineOptions {
  std::vector<std::filesystem::path> voice_dirs;  // searched in order; first id wins
  std::string default_voice;                      // empty: the first voice found
  int threads = 2;                                // torch intra-op threads
  // strict: a voice that fails to load fails its requests (and, preloaded, the node).
  // fallback: it is marked failed and its requests are spoken by the default voice.
  bool strict = true;
  bool preload = true;  // load the default voice when the node is built
  std::size_t max_chars = nodes::TtsEngine::kDefaultMaxChars;
  std::function<void(LogLevel, const std::string&)> log;
};

class LoadedVoice;

class TorchEngine final : public nodes::TtsEngine {
 public:
  // Throws std::runtime_error: no voices found, unknown default voice, or (strict + preload) a
  // default voice that does not load.
  explicit TorchEngine(TorchEngineOptions options);
  ~TorchEngine() override;

  std::vector<nodes::VoiceInfo> voices() const override;
  Result<nodes::Speech, ToolError> synthesize(const nodes::SpeechRequest& request,
                                              const nodes::ChunkSink& sink) const override;
  Result<nodes::VoiceInfo, ToolError> load_voice(const std::string& id) const override;
  Result<nodes::VoiceInfo, ToolError> unload_voice(const std::string& id) const override;

 private:
  struct Slot {
    VoiceConfig config;
    std::shared_ptr<LoadedVoice> loaded;
    std::string error;  // last load failure
  };
  // Loads the slot's model if needed; returns it or the reason it failed. A voice that failed
  // is tried again only when `retry_failed` (an explicit load), not on every request.
  Result<std::shared_ptr<LoadedVoice>, ToolError> acquire(const std::string& id,
                                                          bool retry_failed) const;
  nodes::VoiceInfo info(const Slot& s) const;
  ToolError unknown_voice(const std::string& id) const;

  TorchEngineOptions options_;
  mutable std::mutex mu_;
  mutable std::map<std::string, Slot> slots_;
  std::vector<std::string> order_;  // voice ids in discovery order
  std::string default_voice_;
};

}  // namespace kiln::tts
