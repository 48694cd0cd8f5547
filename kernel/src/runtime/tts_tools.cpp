#include "runtime/tts_tools.hpp"

#include <array>
#include <optional>

#include <boost/json/parse.hpp>

#include "audio/encode.hpp"

namespace kiln::runtime {
namespace json = boost::json;

bool is_openai_voice_name(std::string_view name) {
  static constexpr std::array<std::string_view, 11> kNames{"alloy", "ash",     "ballad", "coral",
                                                           "echo",  "fable",   "nova",   "onyx",
                                                           "sage",  "shimmer", "verse"};
  for (auto n : kNames)
    if (n == name) return true;
  return false;
}

Result<nodes::Speech, ToolError> synthesize(const nodes::TtsEngine& engine,
                                            const nodes::SpeechRequest& request,
                                            const nodes::ChunkSink& sink) {
  // The kernel's own sink may fail too (out of memory while resampling): that stops the
  // engine and is said as the kernel's, not blamed on the plugin.
  std::optional<std::string> sink_failed;
  nodes::ChunkSink guarded;
  if (sink)
    guarded = [&](const nodes::AudioChunk& c) {
      try {
        return sink(c);
      } catch (const std::exception& e) {
        sink_failed = e.what();
        return false;
      }
    };
  try {
    auto r = engine.synthesize(request, guarded);
    if (sink_failed)
      return Unexpected<ToolError>{ToolError{
          error_code::kInternal, "handing the audio on failed: " + *sink_failed, false, {}}};
    return r;
  } catch (const std::exception& e) {
    return Unexpected<ToolError>{
        ToolError{error_code::kInternal,
                  std::string("the tts_engine node threw (a defect of its plugin: errors are to be "
                              "returned): ") +
                      e.what(),
                  false,
                  {}}};
  } catch (...) {
    return Unexpected<ToolError>{
        ToolError{error_code::kInternal,
                  "the tts_engine node threw something that is not an exception",
                  false,
                  {}}};
  }
}

namespace {

ToolOutcome no_engine() {
  return tool_error(error_code::kProviderUnavailable,
                    "no tts_engine node is running (the default node 'torch' comes with the "
                    "tts_torch plugin: build with KILN_WITH_TORCH=ON and keep it enabled)");
}

class SynthesizeTool final : public Tool {
 public:
  explicit SynthesizeTool(TtsEngineRef engine) : engine_(std::move(engine)) {}
  ToolOutcome invoke(const json::value& input, const ToolContext& ctx) override {
    auto engine = engine_();
    if (!engine) return no_engine();
    const auto& in = input.as_object();
    nodes::SpeechRequest req;
    req.text = std::string(in.at("text").as_string());
    if (auto* v = in.if_contains("voice")) req.voice = std::string(v->as_string());
    if (is_openai_voice_name(req.voice)) req.voice.clear();
    if (auto* s = in.if_contains("speed")) req.speed = s->to_number<double>();
    std::string format = "wav";
    if (auto* f = in.if_contains("format")) format = std::string(f->as_string());
    // Sentence by sentence, so that a caller that stopped waiting (timeout) stops the work.
    std::vector<std::int16_t> samples;
    auto speech = synthesize(*engine, req, [&](const nodes::AudioChunk& c) {
      samples.insert(samples.end(), c.samples.begin(), c.samples.end());
      return !ctx.stop.stop_requested();
    });
    if (!speech.ok()) return Unexpected<ToolError>{speech.error()};
    std::string why;
    auto enc = audio::encode(samples, speech.value().sample_rate, format, &why);
    if (!enc)  // the format was valid (schema): the encoder failed on this audio
      return tool_error(error_code::kInternal, "encoding " + format + " failed: " + why);
    const std::string name = "speech." + format;
    json::object out{{"voice", speech.value().voice},
                     {"sample_rate", speech.value().sample_rate},
                     {"seconds", speech.value().audio_seconds},
                     {"sentences", speech.value().sentences},
                     {"format", format},
                     {"bytes", enc->bytes.size()},
                     {"artifact", name}};
    return ToolResult{std::move(out), {Artifact{name, enc->media_type, std::move(enc->bytes)}}};
  }

 private:
  TtsEngineRef engine_;
};

class VoicesTool final : public Tool {
 public:
  explicit VoicesTool(TtsEngineRef engine) : engine_(std::move(engine)) {}
  ToolOutcome invoke(const json::value&, const ToolContext&) override {
    auto engine = engine_();
    if (!engine) return no_engine();
    json::array voices;
    std::string def;
    for (const auto& v : engine->voices()) {
      if (v.is_default) def = v.id;
      voices.push_back(v.to_json());
    }
    return ToolResult{json::object{{"voices", voices}, {"default", def}}, {}};
  }

 private:
  TtsEngineRef engine_;
};

}  // namespace

std::vector<ToolDecl> tts_tools(TtsEngineRef engine) {
  std::vector<ToolDecl> out;
  json::array formats;
  for (const auto& f : audio::supported_formats()) formats.emplace_back(f);
  ToolDecl synth;
  synth.name = "tts.synthesize";
  synth.description =
      "Speak text with the selected tts_engine node; the audio is the artifact speech.<format>.";
  synth.input_schema = json::object{
      {"type", "object"},
      {"required", json::array{"text"}},
      {"additionalProperties", false},
      {"properties",
       json::object{
           {"text", json::object{{"type", "string"}, {"minLength", 1}}},
           {"voice", json::object{{"type", "string"}}},
           {"speed", json::object{{"type", "number"}, {"minimum", 0.25}, {"maximum", 4.0}}},
           {"format", json::object{{"type", "string"}, {"enum", formats}}}}}};
  synth.output_schema = json::object{
      {"type", "object"},
      {"required", json::array{"voice", "sample_rate", "seconds", "format", "artifact"}}};
  synth.factory = [engine](HostServices&) { return std::make_shared<SynthesizeTool>(engine); };
  out.push_back(std::move(synth));

  ToolDecl voices;
  voices.name = "tts.voices";
  voices.description = "The voices of the selected tts_engine node, with their load state.";
  voices.input_schema = json::object{{"type", "object"}};
  voices.output_schema = json::object{{"type", "object"}, {"required", json::array{"voices"}}};
  voices.factory = [engine](HostServices&) { return std::make_shared<VoicesTool>(engine); };
  voices.nonblocking = true;
  out.push_back(std::move(voices));
  return out;
}

}  // namespace kiln::runtime
