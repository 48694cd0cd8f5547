#include "torch_engine.hpp"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "espeak_phonemizer.hpp"
#include "flite_frontend.hpp"
#include "kiln/audio/pcm.hpp"
#include "text.hpp"

namespace kiln::tts {

namespace fs = std::filesystem;
namespace json = boost::json;
using nodes::tts_failure;

// A loaded TorchScript voice, shared by every engine of the process that uses the same file.
class LoadedVoice {
 public:
  explicit LoadedVoice(const fs::path& model_file)
      : module_(torch::jit::load(model_file.string())) {
    module_.eval();
  }

  // Piper's signature: (text [1,T], text_lengths [1], sid [1], noise_scale [1], length_scale [1],
  // noise_w [1]) → tuple (or tensor) whose first element is audio [1,1,N] (or any shape of N).
  std::vector<float> infer(const std::vector<std::int64_t>& ids, double noise_scale,
                           double length_scale, double noise_w) const {
    c10::InferenceMode guard;
    std::vector<std::int64_t> copy = ids;
    auto text =
        torch::from_blob(copy.data(), {1, static_cast<std::int64_t>(copy.size())}, torch::kLong)
            .clone();
    std::vector<torch::jit::IValue> in{
        text,
        torch::tensor({static_cast<std::int64_t>(ids.size())}, torch::kLong),
        torch::tensor({std::int64_t{0}}, torch::kLong),
        torch::tensor({static_cast<float>(noise_scale)}),
        torch::tensor({static_cast<float>(length_scale)}),
        torch::tensor({static_cast<float>(noise_w)})};
    // Module::forward is safe to call from several threads; the module itself is not changed.
    auto out = const_cast<torch::jit::Module&>(module_).forward(in);
    at::Tensor audio = out.isTuple() ? out.toTuple()->elements().at(0).toTensor() : out.toTensor();
    audio = audio.to(torch::kFloat).contiguous().view({-1});
    const float* p = audio.data_ptr<float>();
    return std::vector<float>(p, p + audio.numel());
  }

 private:
  torch::jit::Module module_;
};

namespace {

std::mutex& cache_mutex() {
  static std::mutex mu;
  return mu;
}

// Process-wide: each model file is loaded once while anyone holds it.
std::map<std::string, std::weak_ptr<LoadedVoice>>& cache() {
  static std::map<std::string, std::weak_ptr<LoadedVoice>> c;
  return c;
}

std::shared_ptr<LoadedVoice> load_shared(const fs::path& model) {
  const std::string key = fs::weakly_canonical(model).string();
  {
    std::lock_guard lock(cache_mutex());
    if (auto v = cache()[key].lock()) return v;
  }
  auto v = std::make_shared<LoadedVoice>(model);  // slow: outside the lock
  std::lock_guard lock(cache_mutex());
  if (auto existing = cache()[key].lock()) return existing;
  cache()[key] = v;
  return v;
}

std::string first_line(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

}  // namespace

TorchEngine::TorchEngine(TorchEngineOptions options) : options_(std::move(options)) {
  if (options_.threads > 0) at::set_num_threads(options_.threads);
  const auto found = discover_voices(options_.voice_dirs);
  std::vector<std::string> bad;
  for (const auto& dir : found) {
    try {
      Slot s;
      s.config = read_voice_config(dir);
      order_.push_back(s.config.id);
      slots_.emplace(s.config.id, std::move(s));
    } catch (const std::exception& e) {
      bad.push_back(e.what());
      if (options_.log) options_.log(LogLevel::kWarn, std::string("voice skipped: ") + e.what());
    }
  }
  if (slots_.empty()) {
    std::string where;
    for (const auto& d : options_.voice_dirs) where += (where.empty() ? "" : ", ") + d.string();
    throw std::runtime_error("no usable voice in [" + where +
                             "] (a voice is a folder with voice.json and model.pt)" +
                             (bad.empty() ? "" : "; skipped: " + bad.front()));
  }
  default_voice_ = options_.default_voice.empty() ? order_.front() : options_.default_voice;
  if (!slots_.count(default_voice_))
    throw std::runtime_error("default voice '" + default_voice_ + "' not found; voices: " + [&] {
      std::string s;
      for (const auto& id : order_) s += (s.empty() ? "" : ", ") + id;
      return s;
    }());
  if (options_.preload) {
    auto r = acquire(default_voice_, true);
    if (!r.ok() && options_.strict) throw std::runtime_error(r.error().message);
  }
}

TorchEngine::~TorchEngine() = default;

nodes::VoiceInfo TorchEngine::info(const Slot& s) const {
  nodes::VoiceInfo v;
  v.id = s.config.id;
  v.language = s.config.language;
  v.sample_rate = s.config.sample_rate;
  v.description = s.config.description;
  v.phoneme_type = s.config.phoneme_type;
  v.state = s.loaded ? "loaded" : s.error.empty() ? "available" : "failed";
  v.error = s.error;
  v.is_default = s.config.id == default_voice_;
  return v;
}

std::vector<nodes::VoiceInfo> TorchEngine::voices() const {
  std::lock_guard lock(mu_);
  std::vector<nodes::VoiceInfo> out;
  for (const auto& id : order_) out.push_back(info(slots_.at(id)));
  return out;
}

ToolError TorchEngine::unknown_voice(const std::string& id) const {
  json::array ids;
  std::string list;
  for (const auto& v : order_) {
    ids.emplace_back(v);
    list += (list.empty() ? "" : ", ") + v;
  }
  return ToolError{nodes::tts_error::kUnknownVoice, "unknown voice '" + id + "'; voices: " + list,
                   false, json::object{{"voices", ids}}};
}

Result<std::shared_ptr<LoadedVoice>, ToolError> TorchEngine::acquire(const std::string& id,
                                                                     bool retry_failed) const {
  fs::path model;
  {
    std::lock_guard lock(mu_);
    auto it = slots_.find(id);
    if (it == slots_.end()) return Unexpected<ToolError>{unknown_voice(id)};
    if (it->second.loaded) return it->second.loaded;
    if (!it->second.error.empty() && !retry_failed)
      return tts_failure(nodes::tts_error::kVoiceUnavailable,
                         it->second.error +
                             "; fix it, then load it again (POST "
                             "/v1/audio/voices/" +
                             id + ":load)");
    model = it->second.config.dir / "model.pt";
  }
  std::shared_ptr<LoadedVoice> v;
  std::string error;
  try {
    v = load_shared(model);
  } catch (const std::exception& e) {
    error = "voice '" + id + "': " + model.string() +
            " does not load as a TorchScript module: " + first_line(e.what()) +
            " (re-export it, or remove the folder)";
  }
  std::lock_guard lock(mu_);
  auto& slot = slots_.at(id);
  if (!v) {
    if (slot.loaded) return slot.loaded;  // another request loaded it meanwhile
    slot.error = error;
    if (options_.log) options_.log(LogLevel::kError, error);
    return tts_failure(nodes::tts_error::kVoiceUnavailable, error);
  }
  slot.error.clear();
  if (!slot.loaded) {
    slot.loaded = v;
    if (options_.log)
      options_.log(LogLevel::kDebug, "voice '" + id + "' loaded from " + model.string());
  }
  return slot.loaded;
}

Result<nodes::VoiceInfo, ToolError> TorchEngine::load_voice(const std::string& id) const {
  auto r = acquire(id, true);
  if (!r.ok()) return Unexpected<ToolError>{r.error()};
  std::lock_guard lock(mu_);
  return info(slots_.at(id));
}

Result<nodes::VoiceInfo, ToolError> TorchEngine::unload_voice(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return Unexpected<ToolError>{unknown_voice(id)};
  it->second.loaded.reset();  // in-flight requests keep their own reference
  it->second.error.clear();
  return info(it->second);
}

Result<nodes::Speech, ToolError> TorchEngine::synthesize(const nodes::SpeechRequest& req,
                                                         const nodes::ChunkSink& sink) const {
  if (const auto n = characters(req.text); n > options_.max_chars)
    return tts_failure(nodes::tts_error::kInputTooLarge,
                       "text is " + std::to_string(n) + " characters; the limit is " +
                           std::to_string(options_.max_chars) +
                           " (tts_engine.max_chars); split it into several requests",
                       json::object{{"max_chars", options_.max_chars}});
  if (auto bad = check_text(req.text)) return tts_failure(error_code::kInvalidInput, *bad);
  if (!(req.speed >= 0.25 && req.speed <= 4.0))
    return tts_failure(error_code::kInvalidInput,
                       "speed " + std::to_string(req.speed) + " is outside 0.25 .. 4.0");
  std::string voice_id = req.voice.empty() ? default_voice_ : req.voice;
  auto voice = acquire(voice_id, false);
  if (!voice.ok()) {
    if (voice.error().code != nodes::tts_error::kVoiceUnavailable || options_.strict ||
        voice_id == default_voice_)
      return Unexpected<ToolError>{voice.error()};
    if (options_.log)
      options_.log(LogLevel::kWarn, "voice '" + voice_id + "' failed to load; speaking with '" +
                                        default_voice_ + "' (load_mode: fallback)");
    voice_id = default_voice_;
    voice = acquire(voice_id, false);
    if (!voice.ok()) return Unexpected<ToolError>{voice.error()};
  }
  VoiceConfig cfg;
  {
    std::lock_guard lock(mu_);
    cfg = slots_.at(voice_id).config;
  }
  const auto sentences = split_sentences(strip_markup(req.text));
  if (sentences.empty())
    return tts_failure(error_code::kInvalidInput,
                       "text has nothing to speak once markup is removed");
  nodes::Speech out;
  out.sample_rate = cfg.sample_rate;
  out.voice = voice_id;
  out.sentences = sentences.size();
  std::size_t total = 0;
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    std::vector<std::string> symbols;
    try {
      if (cfg.phoneme_type == "flite") {
        for (auto& s : FliteFrontend::instance().phonemize(normalize_english(sentences[i])))
          symbols.push_back(std::move(s.symbol));
      } else {
        symbols = espeak_phonemes(normalize_english(sentences[i]), cfg.espeak_voice);
      }
    } catch (const std::exception& e) {
      return tts_failure(error_code::kInternal, "front end failed: " + std::string(e.what()));
    }
    std::vector<std::string> unknown;
    const auto ids = to_piper_ids(symbols, cfg.phoneme_id_map, &unknown);
    std::vector<float> audio;
    try {
      audio = voice.value()->infer(ids, cfg.noise_scale, cfg.length_scale / req.speed, cfg.noise_w);
    } catch (const std::exception& e) {
      return tts_failure(error_code::kInternal,
                         "voice '" + voice_id + "' failed: " + first_line(e.what()));
    }
    // Piper's models are not level-normalized; keep the peak below full scale.
    float peak = 0;
    for (float x : audio) peak = std::max(peak, std::abs(x));
    if (peak > 0.95f)
      for (auto& x : audio) x *= 0.95f / peak;
    auto pcm = audio::to_int16(audio.data(), audio.size());
    total += pcm.size();
    if (sink) {
      if (!sink(nodes::AudioChunk{pcm, cfg.sample_rate, i, sentences.size(), voice_id}))
        return tts_failure(error_code::kUnavailable,
                           "stopped by the receiver after sentence " + std::to_string(i + 1));
    } else {
      out.samples.insert(out.samples.end(), pcm.begin(), pcm.end());
    }
  }
  out.audio_seconds = static_cast<double>(total) / cfg.sample_rate;
  return out;
}

}  // namespace kiln::tts
