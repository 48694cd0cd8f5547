// The tts_espeak plugin: node tts_engine/espeak, espeak-ng's own formant synthesizer. Not the
// kind's default: it runs only once `kiln gate run tts_engine/espeak` has passed for this binary.
#include <espeak-ng/speak_lib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "espeak_lock.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "kiln/plugin.hpp"
#include "text.hpp"

namespace {

namespace json = boost::json;
using kiln::nodes::tts_failure;

int synth_callback(short* wav, int n, espeak_EVENT* events) {
  if (wav && n > 0 && events) {
    auto* out = static_cast<std::vector<std::int16_t>*>(events->user_data);
    if (out) out->insert(out->end(), wav, wav + n);
  }
  return 0;  // go on
}

class EspeakEngine final : public kiln::nodes::TtsEngine {
 public:
  // `voice_file`: an espeak-ng voice file selected by path (the deterministic voice), or empty
  // to select `voice` by name.
  EspeakEngine(std::string voice, std::filesystem::path voice_file, int rate, std::size_t max_chars)
      : voice_(std::move(voice)),
        voice_file_(std::move(voice_file)),
        rate_(rate),
        max_chars_(max_chars) {
    std::lock_guard lock(kiln::tts::espeak_mutex());
    sample_rate_ = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr, 0);
    if (sample_rate_ <= 0)
      throw std::runtime_error("libespeak-ng did not initialize (is espeak-ng-data installed?)");
    if (select() != EE_OK)
      throw std::runtime_error(
          "espeak-ng has no voice '" + voice_ +
          "' (plugin_config.tts_espeak.voice); `espeak-ng --voices` lists them");
  }

  std::vector<kiln::nodes::VoiceInfo> voices() const override { return {info()}; }

  kiln::Result<kiln::nodes::VoiceInfo, kiln::ToolError> load_voice(
      const std::string& id) const override {
    if (id != id_()) return unknown(id);
    return info();
  }
  kiln::Result<kiln::nodes::VoiceInfo, kiln::ToolError> unload_voice(
      const std::string& id) const override {
    if (id != id_()) return unknown(id);
    return info();  // nothing to free: espeak-ng's data stays mapped
  }

  kiln::Result<kiln::nodes::Speech, kiln::ToolError> synthesize(
      const kiln::nodes::SpeechRequest& req, const kiln::nodes::ChunkSink& sink) const override {
    using namespace kiln;
    if (const auto n = tts::characters(req.text); n > max_chars_)
      return tts_failure(nodes::tts_error::kInputTooLarge,
                         "text is " + std::to_string(n) + " characters; the limit is " +
                             std::to_string(max_chars_) + " (tts_engine.max_chars)",
                         json::object{{"max_chars", max_chars_}});
    if (auto bad = tts::check_text(req.text)) return tts_failure(error_code::kInvalidInput, *bad);
    if (!(req.speed >= 0.25 && req.speed <= 4.0))
      return tts_failure(error_code::kInvalidInput,
                         "speed " + std::to_string(req.speed) + " is outside 0.25 .. 4.0");
    if (!req.voice.empty() && req.voice != id_()) return unknown(req.voice);
    const auto sentences = tts::split_sentences(tts::strip_markup(req.text));
    if (sentences.empty())
      return tts_failure(error_code::kInvalidInput,
                         "text has nothing to speak once markup is removed");
    const int rate = std::clamp(static_cast<int>(std::lround(rate_ * req.speed)),
                                espeakRATE_MINIMUM, espeakRATE_MAXIMUM);
    nodes::Speech out;
    out.sample_rate = sample_rate_;
    out.voice = id_();
    out.sentences = sentences.size();
    std::size_t total = 0;
    for (std::size_t i = 0; i < sentences.size(); ++i) {
      std::vector<std::int16_t> pcm;
      const std::string text = tts::normalize_english(sentences[i]);
      {
        std::lock_guard lock(tts::espeak_mutex());
        espeak_SetSynthCallback(synth_callback);
        select();
        espeak_SetParameter(espeakRATE, rate, 0);
        const auto rc = espeak_Synth(text.c_str(), text.size() + 1, 0, POS_CHARACTER, 0,
                                     espeakCHARS_UTF8, nullptr, &pcm);
        if (rc != EE_OK)
          return tts_failure(error_code::kInternal,
                             "espeak_Synth failed (" + std::to_string(rc) + ")");
        espeak_Synchronize();
      }
      total += pcm.size();
      if (sink) {
        if (!sink(nodes::AudioChunk{pcm, sample_rate_, i, sentences.size(), out.voice}))
          return tts_failure(error_code::kUnavailable,
                             "stopped by the receiver after sentence " + std::to_string(i + 1));
      } else {
        out.samples.insert(out.samples.end(), pcm.begin(), pcm.end());
      }
    }
    out.audio_seconds = static_cast<double>(total) / sample_rate_;
    return out;
  }

 private:
  std::string id_() const { return "espeak-" + voice_; }
  kiln::nodes::VoiceInfo info() const {
    kiln::nodes::VoiceInfo v;
    v.id = id_();
    v.language = voice_;
    v.sample_rate = sample_rate_;
    v.description = "espeak-ng formant synthesizer, voice " + voice_ + ", " +
                    std::to_string(rate_) + " words per minute";
    v.phoneme_type = "espeak";
    v.state = "loaded";
    v.is_default = true;
    return v;
  }
  kiln::Unexpected<kiln::ToolError> unknown(const std::string& id) const {
    return tts_failure(kiln::nodes::tts_error::kUnknownVoice,
                       "unknown voice '" + id + "'; voices: " + id_(),
                       json::object{{"voices", json::array{json::value(id_())}}});
  }

  // Under espeak_mutex().
  espeak_ERROR select() const {
    return voice_file_.empty() ? espeak_SetVoiceByName(voice_.c_str())
                               : espeak_SetVoiceByFile(voice_file_.c_str());
  }

  std::string voice_;
  std::filesystem::path voice_file_;
  int rate_;
  std::size_t max_chars_;
  int sample_rate_ = 0;
};

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "tts_espeak";
  m.version = "0.1.0";
  m.description = "Text to speech with espeak-ng's own synthesizer (node tts_engine/espeak)";
  m.license = "GPL-3.0-or-later";  // links libespeak-ng
  m.config_keys = {
      {"voice", "string", "en-us", "espeak-ng voice name (`espeak-ng --voices`)"},
      {"deterministic", "boolean", true,
       "speak with flutter and roughness off, so that the same text gives the same samples (the "
       "kind's contract requires it; espeak-ng's voices otherwise vary from call to call)"},
      {"rate", "integer", 160, "words per minute at speed 1.0 (espeak-ng's default is 175)"},
  };
  m.nodes.push_back(kiln::NodeDecl::make<kiln::nodes::TtsEngine>(
      "espeak", "espeak-ng formant synthesizer (22.05 kHz)", [](const kiln::NodeContext& ctx) {
        const auto& c = ctx.plugin_config;
        std::string voice = "en-us";
        int rate = 160;
        bool deterministic = true;
        if (const auto* v = c.if_contains("voice"); v && v->is_string())
          voice = std::string(v->as_string());
        if (const auto* r = c.if_contains("rate"); r && r->is_int64())
          rate = static_cast<int>(r->as_int64());
        if (const auto* d = c.if_contains("deterministic"); d && d->is_bool())
          deterministic = d->as_bool();
        std::filesystem::path file;
        if (deterministic) {
          // espeak-ng's voices modulate pitch (flutter) and add roughness whose phase carries
          // over from call to call; the same language with both off gives the same samples for
          // the same text. The voice file is written where the plugin may write.
          for (char ch : voice)
            if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_')
              throw std::runtime_error("plugin_config.tts_espeak.voice '" + voice +
                                       "' is not a voice name");
          file = ctx.host.artifact_dir() / ("espeak-voice-" + voice);
          std::ofstream f(file);
          f << "name kiln-" << voice << "\nlanguage " << voice << "\nflutter 0\nroughness 0\n";
          f.close();
          if (!f)
            throw std::runtime_error("cannot write the espeak-ng voice file " + file.string());
        }
        return std::make_shared<EspeakEngine>(
            voice, file, rate, kiln::nodes::TtsSettings::from_json(ctx.kind_config).max_chars);
      }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
