// kiln_tts_teacher — renders the training corpus of the embedded voice with its teacher (flite
// cmu_us_slt through libflite) and the exact front end the plugin uses at inference.
//
//   kiln_tts_teacher CORPUS.txt OUT_DIR [--part K/N] [--limit N]
//
// For line i (1-based) of CORPUS it writes OUT_DIR/wav/<i>.wav (16 kHz mono) and one JSON line
// to OUT_DIR/utterances-<K>.jsonl: {"id", "text", "normalized", "symbols", "ends"} where ends[j]
// is the end time in seconds of symbols[j] in the audio (-1: takes no time). OUT_DIR/inventory.json
// lists every symbol the front end can produce. --part K/N renders every N-th line starting at K
// (run N processes to use N cores).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <boost/json.hpp>

#include "flite_frontend.hpp"
#include "kiln/audio/pcm.hpp"
#include "text.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;

int main(int argc, char** argv) {
  if (argc < 3 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: kiln_tts_teacher CORPUS.txt OUT_DIR [--part K/N] [--limit N]\n");
    return argc < 3 ? 2 : 0;
  }
  const fs::path corpus = argv[1], out = argv[2];
  int part = 0, parts = 1;
  long limit = -1;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--part" && i + 1 < argc) {
      if (std::sscanf(argv[++i], "%d/%d", &part, &parts) != 2 || parts < 1 || part < 0 ||
          part >= parts) {
        std::fprintf(stderr, "kiln_tts_teacher: --part wants K/N with 0 <= K < N\n");
        return 2;
      }
    } else if (a == "--limit" && i + 1 < argc) {
      limit = std::atol(argv[++i]);
    } else {
      std::fprintf(stderr, "kiln_tts_teacher: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  std::ifstream in(corpus);
  if (!in) {
    std::fprintf(stderr, "kiln_tts_teacher: cannot read %s\n", corpus.c_str());
    return 1;
  }
  fs::create_directories(out / "wav");
  auto& fe = kiln::tts::FliteFrontend::instance();
  {
    json::array inv;
    for (const auto& s : fe.inventory()) inv.emplace_back(s);
    std::ofstream(out / "inventory.json") << json::serialize(inv) << "\n";
  }
  std::ofstream meta(out / ("utterances-" + std::to_string(part) + ".jsonl"));
  std::string line;
  long n = 0, done = 0;
  double seconds = 0;
  while (std::getline(in, line)) {
    ++n;
    if (limit >= 0 && n > limit) break;
    if ((n - 1) % parts != part || line.empty()) continue;
    if (auto bad = kiln::tts::check_text(line)) {
      std::fprintf(stderr, "line %ld skipped: %s\n", n, bad->c_str());
      continue;
    }
    const std::string normalized = kiln::tts::normalize_english(kiln::tts::strip_markup(line));
    auto t = fe.teach(normalized);
    char name[32];
    std::snprintf(name, sizeof name, "%05ld", n);
    std::ofstream(out / "wav" / (std::string(name) + ".wav"), std::ios::binary)
        << kiln::audio::wav_bytes(t.samples, t.sample_rate);
    json::array symbols, ends;
    for (const auto& s : t.symbols) {
      symbols.emplace_back(s.symbol);
      ends.emplace_back(s.end_s);
    }
    meta << json::serialize(json::object{{"id", name},
                                         {"text", line},
                                         {"normalized", normalized},
                                         {"sample_rate", t.sample_rate},
                                         {"symbols", symbols},
                                         {"ends", ends}})
         << "\n";
    seconds += static_cast<double>(t.samples.size()) / t.sample_rate;
    if (++done % 250 == 0)
      std::fprintf(stderr, "part %d: %ld utterances, %.1f min of audio\n", part, done,
                   seconds / 60);
  }
  std::fprintf(stderr, "part %d: done, %ld utterances, %.1f min of audio\n", part, done,
               seconds / 60);
  return 0;
}
