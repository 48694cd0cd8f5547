// Speed of a tts_engine node, and its audio for the intelligibility scorer (bench/tts/run).
//
//   kiln_bench_tts --node NAME --sentences FILE --out-dir DIR [--repeat N] [--latency-text T]
//                  [--config F] [--set K=V]
//
// Builds node tts_engine/NAME from the loaded plugins (no gate needed: this measures, it does
// not serve), speaks every line of FILE N times (default 3), writes DIR/s<i>.wav (1-based) from
// the first round, and prints one JSON object: real-time factor (synthesis seconds / audio
// seconds, best round), the time to the first audio chunk for each sentence (median), and for a
// 10-word sentence (median of 10 calls after one warm-up).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "audio/encode.hpp"
#include "bench_util.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "runtime/kernel.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace kiln;
using bench::Clock;
using bench::seconds_since;

int main(int argc, char** argv) {
  std::string node_name = "torch", sentences_file, out_dir;
  // The goal's "first audio of a 10-word sentence".
  std::string latency_text = "First crack came at nine minutes and twelve seconds today.";
  int repeat = 3;
  runtime::BootOptions boot;
  boot.resolve_nodes = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--node")
      node_name = next();
    else if (a == "--sentences")
      sentences_file = next();
    else if (a == "--out-dir")
      out_dir = next();
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(next()));
    else if (a == "--config")
      boot.config_files.emplace_back(next());
    else if (a == "--set")
      boot.sets.push_back(next());
    else {
      std::fprintf(stderr,
                   "usage: kiln_bench_tts --node NAME --sentences FILE --out-dir DIR [--repeat N] "
                   "[--config F] [--set K=V]\n");
      return 2;
    }
  }
  if (sentences_file.empty() || out_dir.empty()) {
    std::fprintf(stderr, "kiln_bench_tts: --sentences and --out-dir are required\n");
    return 2;
  }
  std::vector<std::string> sentences;
  {
    std::ifstream in(sentences_file);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) sentences.push_back(line);
  }
  fs::create_directories(out_dir);
  try {
    auto k = runtime::Kernel::boot(boot);
    const auto* entry = k->registry().find_node(nodes::TtsEngine::kKind, node_name);
    if (!entry) {
      std::fprintf(stderr, "kiln_bench_tts: no node tts_engine/%s is loaded\n", node_name.c_str());
      return 1;
    }
    auto build_start = Clock::now();
    auto node = std::static_pointer_cast<nodes::TtsEngine>(
        k->node_maker(*entry, true)(k->config().section(nodes::TtsEngine::kKind)));
    const double build_s = seconds_since(build_start);
    double best_synth = 1e30, audio_s = 0;
    std::vector<double> first_chunk_ms;
    for (int round = 0; round < repeat; ++round) {
      double synth = 0;
      audio_s = 0;
      for (std::size_t i = 0; i < sentences.size(); ++i) {
        std::vector<std::int16_t> samples;
        int rate = 0;
        double first = -1;
        auto start = Clock::now();
        auto r = node->synthesize(
            nodes::SpeechRequest{sentences[i], "", 1.0}, [&](const nodes::AudioChunk& c) {
              if (first < 0) first = seconds_since(start) * 1000;
              rate = c.sample_rate;
              samples.insert(samples.end(), c.samples.begin(), c.samples.end());
              return true;
            });
        synth += seconds_since(start);
        if (!r.ok()) {
          std::fprintf(stderr, "kiln_bench_tts: sentence %zu: %s: %s\n", i + 1,
                       r.error().code.c_str(), r.error().message.c_str());
          return 1;
        }
        audio_s += static_cast<double>(samples.size()) / rate;
        if (round == 0) {
          std::string why;
          auto wav = audio::encode(samples, rate, "wav", &why);
          std::ofstream(fs::path(out_dir) / ("s" + std::to_string(i + 1) + ".wav"),
                        std::ios::binary)
              << wav->bytes;
        } else {
          first_chunk_ms.push_back(first);
        }
      }
      best_synth = std::min(best_synth, synth);
    }
    std::vector<double> latency;
    for (int i = 0; i < 11; ++i) {
      double first = -1;
      auto start = Clock::now();
      auto r = node->synthesize(nodes::SpeechRequest{latency_text, "", 1.0},
                                [&](const nodes::AudioChunk&) {
                                  if (first < 0) first = seconds_since(start) * 1000;
                                  return true;
                                });
      if (!r.ok()) {
        std::fprintf(stderr, "kiln_bench_tts: the latency text: %s: %s\n", r.error().code.c_str(),
                     r.error().message.c_str());
        return 1;
      }
      if (i > 0) latency.push_back(first);  // the first call warms up
    }
    std::sort(latency.begin(), latency.end());
    std::sort(first_chunk_ms.begin(), first_chunk_ms.end());
    json::object o{
        {"node", "tts_engine/" + node_name},
        {"sentences", sentences.size()},
        {"audio_seconds", audio_s},
        {"synthesis_seconds", best_synth},
        {"rtf", best_synth / audio_s},
        // Timed from the second round on (the first writes the files): null with --repeat 1.
        {"first_audio_ms_median", first_chunk_ms.empty()
                                      ? json::value(nullptr)
                                      : json::value(first_chunk_ms[first_chunk_ms.size() / 2])},
        {"first_audio_ms_max",
         first_chunk_ms.empty() ? json::value(nullptr) : json::value(first_chunk_ms.back())},
        {"latency_text", latency_text},
        {"first_audio_ms_10_words", latency[latency.size() / 2]},
        {"node_build_seconds", build_s},
        {"rounds", repeat}};
    std::printf("%s\n", json::serialize(o).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln_bench_tts: %s\n", e.what());
    return 1;
  }
  return 0;
}
