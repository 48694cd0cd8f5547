// test_tts: tts_engine nodes that break their contract on purpose — `throwing` throws from
// synthesize for a sentence with "boom" in it (errors are to be returned), after speaking the
// sentences before it: the kernel must answer an error, not end the process. `hanging` never
// returns from synthesize, `stuck_on_close` from its destructor: a gate must fail them, not wait
// with them.
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "kiln/kiln.hpp"
#include "kiln/nodes/tts_engine.hpp"

namespace {
using namespace kiln;

class ThrowingEngine final : public nodes::TtsEngine {
 public:
  enum class Hangs { kNever, kSpeaking, kClosing };
  explicit ThrowingEngine(Hangs hangs) : hangs_(hangs) {}
  ~ThrowingEngine() override {
    while (hangs_ == Hangs::kClosing) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  std::vector<nodes::VoiceInfo> voices() const override { return {voice()}; }
  Result<nodes::Speech, ToolError> synthesize(const nodes::SpeechRequest& request,
                                              const nodes::ChunkSink& sink) const override {
    while (hangs_ == Hangs::kSpeaking) std::this_thread::sleep_for(std::chrono::hours(1));
    std::vector<std::string> sentences;
    std::string current;
    for (char c : request.text) {
      current += c;
      if (c == '.') sentences.push_back(std::exchange(current, {}));
    }
    if (!current.empty()) sentences.push_back(current);
    nodes::Speech out;
    out.sample_rate = kRate;
    out.voice = "beep";
    for (std::size_t i = 0; i < sentences.size(); ++i) {
      if (sentences[i].find("boom") != std::string::npos)
        throw std::runtime_error("test_tts: cannot say boom");
      std::vector<std::int16_t> tone(kRate / 5);
      for (std::size_t n = 0; n < tone.size(); ++n)
        tone[n] = static_cast<std::int16_t>(8000 * std::sin(n * 2 * M_PI * 440 / kRate));
      ++out.sentences;
      out.audio_seconds += 0.2;
      if (sink) {
        if (!sink(nodes::AudioChunk{tone, kRate, i, sentences.size(), out.voice}))
          return tool_error(error_code::kUnavailable, "stopped");
      } else {
        out.samples.insert(out.samples.end(), tone.begin(), tone.end());
      }
    }
    return out;
  }
  Result<nodes::VoiceInfo, ToolError> load_voice(const std::string&) const override {
    return voice();
  }
  Result<nodes::VoiceInfo, ToolError> unload_voice(const std::string&) const override {
    return voice();
  }

 private:
  Hangs hangs_;
  static constexpr int kRate = 16000;
  static nodes::VoiceInfo voice() {
    nodes::VoiceInfo v;
    v.id = "beep";
    v.language = "en";
    v.sample_rate = kRate;
    v.state = "loaded";
    v.is_default = true;
    return v;
  }
};

Manifest manifest() {
  Manifest m;
  m.name = "test_tts";
  m.version = "0.0.1";
  m.description = "a tts_engine node that throws";
  m.license = "Apache-2.0";
  using Hangs = ThrowingEngine::Hangs;
  for (const auto& [name, description, hangs] :
       {std::tuple{"throwing", "beeps; throws for a sentence with 'boom'", Hangs::kNever},
        std::tuple{"hanging", "never returns from synthesize", Hangs::kSpeaking},
        std::tuple{"stuck_on_close", "speaks, but its destructor never returns", Hangs::kClosing}})
    m.nodes.push_back(NodeDecl::make<nodes::TtsEngine>(
        name, description,
        [hangs = hangs](const NodeContext&) { return std::make_shared<ThrowingEngine>(hangs); }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
