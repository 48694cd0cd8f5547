// kiln/testkit/tts_engine.hpp — contract and parity suites of the `tts_engine` kind.
// `kiln gate run tts_engine/NODE` runs exactly these; plugin authors run them in their own tests
// (see kiln/testkit/boost_test.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "kiln/nodes/tts_engine.hpp"
#include "kiln/testkit/report.hpp"

namespace kiln::testkit {

using TtsEngineFactory =
    std::function<std::shared_ptr<nodes::TtsEngine>(const boost::json::object& kind_config)>;

// A golden sentence of the parity suite.
struct TtsCase {
  std::string name;
  std::string text;
};

namespace tts_detail {

inline std::string describe(const Result<nodes::Speech, ToolError>& r) {
  if (!r.ok()) return "error " + r.error().code + ": " + r.error().message;
  return std::to_string(r.value().samples.size()) + " samples at " +
         std::to_string(r.value().sample_rate) + " Hz";
}

inline double seconds(const nodes::Speech& s) {
  return s.sample_rate > 0 ? static_cast<double>(s.samples.size()) / s.sample_rate : 0.0;
}

inline double rms(const std::vector<std::int16_t>& x) {
  if (x.empty()) return 0;
  double acc = 0;
  for (auto v : x) acc += static_cast<double>(v) * v;
  return std::sqrt(acc / static_cast<double>(x.size()));
}

inline double clipped_fraction(const std::vector<std::int16_t>& x) {
  if (x.empty()) return 0;
  std::size_t n = 0;
  for (auto v : x)
    if (v >= 32767 || v <= -32767) ++n;
  return static_cast<double>(n) / static_cast<double>(x.size());
}

using testkit::guarded;  // kiln/testkit/report.hpp

inline bool fails_with(const Result<nodes::Speech, ToolError>& r, const char* code) {
  return !r.ok() && r.error().code == code && !r.error().message.empty();
}

}  // namespace tts_detail

// The kind's contract, version nodes::TtsEngine::kContractVersion.
inline SuiteReport run_tts_engine_contract(const TtsEngineFactory& make) {
  using nodes::SpeechRequest;
  using namespace tts_detail;
  SuiteReport report;
  report.suite = "contract";
  std::shared_ptr<nodes::TtsEngine> node;
  guarded(report, "constructs with an empty kind config", [&] {
    node = make(boost::json::object{});
    report.add("constructs with an empty kind config", node != nullptr,
               node ? "" : "factory returned null");
  });
  if (!node) return report;

  nodes::VoiceInfo def;
  guarded(report, "declares voices with a sample rate and one default", [&] {
    auto vs = node->voices();
    int defaults = 0;
    bool rates = !vs.empty();
    for (const auto& v : vs) {
      if (v.is_default) {
        ++defaults;
        def = v;
      }
      if (v.sample_rate <= 0 || v.id.empty()) rates = false;
    }
    report.add("declares voices with a sample rate and one default", rates && defaults == 1,
               std::to_string(vs.size()) + " voice(s), " + std::to_string(defaults) + " default");
  });

  const std::string sentence = "First crack at nine minutes twelve.";
  // Checks whose failure says what was expected besides what came back.
  auto check_error = [&](const std::string& name, SpeechRequest req, const char* code) {
    guarded(report, name, [&] {
      auto r = node->synthesize(req);
      report.add(name, fails_with(r, code),
                 "expected error " + std::string(code) + " with a message; got " + describe(r));
    });
  };
  check_error("empty text is invalid_input", SpeechRequest{"", "", 1.0}, error_code::kInvalidInput);
  check_error("whitespace and punctuation only is invalid_input",
              SpeechRequest{" \n\t ... ", "", 1.0}, error_code::kInvalidInput);
  check_error("invalid UTF-8 is invalid_input", SpeechRequest{"caf\xC3 au lait", "", 1.0},
              error_code::kInvalidInput);
  check_error("a control character is invalid_input",
              SpeechRequest{std::string("bean\x07temperature"), "", 1.0},
              error_code::kInvalidInput);
  {
    std::string big;
    while (big.size() <= nodes::TtsEngine::kDefaultMaxChars) big += "a long sentence. ";
    check_error("text over max_chars is input_too_large", SpeechRequest{big, "", 1.0},
                nodes::tts_error::kInputTooLarge);
  }
  guarded(report, "an unknown voice is unknown_voice and lists the voices", [&] {
    auto r = node->synthesize(SpeechRequest{sentence, "no-such-voice", 1.0});
    bool lists = !r.ok() && r.error().details.is_object() &&
                 r.error().details.as_object().contains("voices");
    report.add("an unknown voice is unknown_voice and lists the voices",
               fails_with(r, nodes::tts_error::kUnknownVoice) && lists,
               "expected error unknown_voice with details.voices; got " + describe(r) +
                   (r.ok() || lists ? "" : " (no details.voices)"));
  });
  check_error("speed below 0.25 is invalid_input", SpeechRequest{sentence, "", 0.1},
              error_code::kInvalidInput);
  check_error("speed above 4.0 is invalid_input", SpeechRequest{sentence, "", 4.5},
              error_code::kInvalidInput);

  nodes::Speech base;
  guarded(report, "speaks a sentence at the declared sample rate", [&] {
    auto r = node->synthesize(SpeechRequest{sentence, "", 1.0});
    bool ok = r.ok() && r.value().sample_rate == def.sample_rate && seconds(r.value()) > 0.5 &&
              seconds(r.value()) < 15 && rms(r.value().samples) > 100;
    if (r.ok()) base = r.value();
    report.add("speaks a sentence at the declared sample rate", ok,
               "expected " + std::to_string(def.sample_rate) +
                   " Hz (the default voice's), 0.5 to 15 s, rms above 100; got " + describe(r) +
                   (r.ok() ? ", " + std::to_string(seconds(r.value())) + " s, rms " +
                                 std::to_string(rms(r.value().samples))
                           : ""));
  });
  // The checks below compare with that sentence: without it they are reported as not run.
  const std::vector<std::string> needs_base = {"says what it spoke (voice, sentences, seconds)",
                                               "the same input gives the same audio",
                                               "markup tags are dropped, not spoken",
                                               "speed 2 is shorter and speed 0.5 longer",
                                               "safe from several threads (same audio)",
                                               "streams one chunk per sentence, equal to the whole",
                                               "a sink returning false stops the synthesis",
                                               "load and unload of the default voice"};
  if (base.samples.empty()) {
    for (const auto& name : needs_base)
      report.add(name, false, "not run: the sentence above was not spoken");
    return report;
  }
  guarded(report, needs_base[0], [&] {
    const double told = base.audio_seconds, counted = seconds(base);
    const bool ok = base.voice == def.id && base.sentences == 1 && std::abs(told - counted) < 0.05;
    report.add(needs_base[0], ok,
               "expected voice " + def.id + ", 1 sentence, audio_seconds " +
                   std::to_string(counted) + "; got voice '" + base.voice + "', " +
                   std::to_string(base.sentences) + " sentence(s), audio_seconds " +
                   std::to_string(told));
  });

  guarded(report, needs_base[1], [&] {
    auto r = node->synthesize(SpeechRequest{sentence, "", 1.0});
    report.add(needs_base[1], r.ok() && r.value().samples == base.samples, describe(r));
  });
  guarded(report, needs_base[2], [&] {
    auto tagged = node->synthesize(
        SpeechRequest{"<speak><s>First crack at nine minutes twelve.</s></speak>", "", 1.0});
    report.add(needs_base[2], tagged.ok() && tagged.value().samples == base.samples,
               describe(tagged));
  });
  guarded(report, needs_base[3], [&] {
    auto fast = node->synthesize(SpeechRequest{sentence, "", 2.0});
    auto slow = node->synthesize(SpeechRequest{sentence, "", 0.5});
    bool ok = fast.ok() && slow.ok() && seconds(fast.value()) < 0.8 * seconds(base) &&
              seconds(slow.value()) > 1.25 * seconds(base);
    auto took = [](const Result<nodes::Speech, ToolError>& r) {
      return r.ok() ? std::to_string(seconds(r.value())) + " s" : describe(r);
    };
    report.add(needs_base[3], ok,
               "expected speed 2.0 under 0.8x and 0.5 over 1.25x the " +
                   std::to_string(seconds(base)) + " s of speed 1.0; got 2.0: " + took(fast) +
                   ", 0.5: " + took(slow));
  });
  guarded(report, needs_base[4], [&] {
    std::vector<std::vector<std::int16_t>> outs(4);
    std::vector<std::thread> ts;
    for (std::size_t i = 0; i < outs.size(); ++i)
      ts.emplace_back([&, i] {
        for (int k = 0; k < 2; ++k) {
          auto r = node->synthesize(SpeechRequest{sentence, "", 1.0});
          if (r.ok()) outs[i] = r.value().samples;
        }
      });
    for (auto& t : ts) t.join();
    bool same = true;
    for (const auto& o : outs) same = same && o == base.samples;
    report.add(needs_base[4], same, "4 threads x 2 calls");
  });
  guarded(report, needs_base[5], [&] {
    const std::string three = "Charge at two hundred degrees. Turning point at one minute. Drop!";
    auto whole = node->synthesize(SpeechRequest{three, "", 1.0});
    std::vector<std::int16_t> joined;
    std::size_t chunks = 0, announced = 0;
    auto streamed =
        node->synthesize(SpeechRequest{three, "", 1.0}, [&](const nodes::AudioChunk& c) {
          ++chunks;
          announced = c.count;
          joined.insert(joined.end(), c.samples.begin(), c.samples.end());
          return true;
        });
    bool ok = whole.ok() && streamed.ok() && chunks == 3 && announced == 3 &&
              joined == whole.value().samples;
    report.add(needs_base[5], ok, std::to_string(chunks) + " chunk(s), " + describe(streamed));
  });
  guarded(report, needs_base[6], [&] {
    std::size_t chunks = 0;
    auto r = node->synthesize(SpeechRequest{"One. Two. Three. Four.", "", 1.0},
                              [&](const nodes::AudioChunk&) { return ++chunks < 2; });
    report.add(needs_base[6], !r.ok() && chunks == 2,
               std::to_string(chunks) + " chunk(s), " + describe(r));
  });
  guarded(report, needs_base[7], [&] {
    auto u = node->unload_voice(def.id);
    auto l = node->load_voice(def.id);
    auto again = node->synthesize(SpeechRequest{sentence, "", 1.0});
    auto bad = node->load_voice("no-such-voice");
    bool ok = u.ok() && l.ok() && l.value().state == "loaded" && again.ok() &&
              again.value().samples == base.samples && !bad.ok() &&
              bad.error().code == nodes::tts_error::kUnknownVoice;
    report.add(needs_base[7], ok, l.ok() ? "state " + l.value().state : l.error().message);
  });
  return report;
}

// Golden sentences: a JSON file {"cases": [{"name", "text"}...]}.
inline std::vector<TtsCase> parse_tts_cases(std::string_view text, const std::string& origin) {
  std::vector<TtsCase> out;
  auto v = boost::json::parse(text);
  for (const auto& c : v.at("cases").as_array()) {
    TtsCase t;
    t.name = origin + ": " + std::string(c.at("name").as_string());
    t.text = std::string(c.at("text").as_string());
    out.push_back(std::move(t));
  }
  return out;
}

// Parity against the default node: for every golden sentence the candidate's audio lasts within
// ±35 % of the control's, is not silent, and is not clipped.
inline SuiteReport run_tts_engine_parity(const TtsEngineFactory& control,
                                         const TtsEngineFactory& candidate,
                                         const std::vector<TtsCase>& cases,
                                         const std::vector<std::string>& intended) {
  using namespace tts_detail;
  SuiteReport report;
  report.suite = "parity";
  std::shared_ptr<nodes::TtsEngine> a, b;
  guarded(report, "both nodes construct", [&] {
    a = control(boost::json::object{});
    b = candidate(boost::json::object{});
    report.add("both nodes construct", a && b);
  });
  if (!a || !b) return report;
  if (cases.empty()) report.add("golden sentences present", false, "no parity cases found");
  for (const auto& c : cases) {
    guarded(report, c.name, [&] {
      auto ra = a->synthesize(nodes::SpeechRequest{c.text, "", 1.0});
      auto rb = b->synthesize(nodes::SpeechRequest{c.text, "", 1.0});
      if (!ra.ok() || !rb.ok()) {
        report.add(c.name, false, "control: " + describe(ra) + "; candidate: " + describe(rb));
        return;
      }
      const double da = seconds(ra.value()), db = seconds(rb.value());
      const double ratio = da > 0 ? db / da : 0;
      const double level = rms(rb.value().samples);
      const double clip = clipped_fraction(rb.value().samples);
      const bool ok = ratio >= 0.65 && ratio <= 1.35 && level > 300 && clip < 0.005;
      char detail[200];
      std::snprintf(detail, sizeof detail,
                    "duration %.2f s vs control %.2f s (ratio %.2f, allowed 0.65-1.35), rms %.0f "
                    "(> 300), clipped %.3f%% (< 0.5%%)",
                    db, da, ratio, level, clip * 100);
      report.add(c.name, ok, detail);
      for (const auto& i : intended)
        if (i == c.name && !ok) report.checks.back().intended = true;
    });
  }
  return report;
}

}  // namespace kiln::testkit
