// The front end of voices whose phoneme type is "flite": libflite's English text analysis
// (tokens, numbers, lexicon, letter-to-sound, phrasing, post-lexical rules) turned into the
// symbol sequence the embedded voice was trained on. The same code produced the training data
// (tools/teacher.cpp), so what the model hears at inference is exactly what it learned from.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kiln::tts {

// One symbol of a sentence. Phones are CMU phones (flite's us English phone set), vowels carry
// their lexical stress ("ae1", "ax0"); "pau" is a pause; " " separates words; "," "." "?" "!"
// mark the punctuation after a word. end_s is the end time in the teacher's audio (only
// filled by FliteFrontend::teach) or -1 for symbols that take no time.
struct FliteSymbol {
  std::string symbol;
  double end_s = -1;
};

struct TeacherUtterance {
  std::vector<FliteSymbol> symbols;
  std::vector<std::int16_t> samples;
  int sample_rate = 0;
};

class FliteFrontend {
 public:
  // Initializes libflite and the slt voice once per process. Thread-safe; calls are serialized
  // (libflite keeps global state).
  static FliteFrontend& instance();

  // The symbols of one normalized sentence (front end only: ~0.3 ms, no audio).
  std::vector<FliteSymbol> phonemize(const std::string& sentence);

  // Full synthesis by the teacher voice (flite cmu_us_slt): its audio and the symbols with the
  // end time of every phone.
  TeacherUtterance teach(const std::string& sentence);

  // Every symbol the front end can produce, in a stable order (the embedded voice's
  // phoneme_id_map is built from it: "_" "^" "$" first, then these).
  std::vector<std::string> inventory();

 private:
  FliteFrontend();
  struct Impl;
  Impl* impl_;
};

// Piper's id layout: "^", then each symbol's id followed by "_" (pad), then "$". Symbols missing
// from the map are collected into `unknown` and skipped.
std::vector<std::int64_t> to_piper_ids(
    const std::vector<std::string>& symbols,
    const std::map<std::string, std::vector<std::int64_t>>& id_map,
    std::vector<std::string>* unknown);

}  // namespace kiln::tts
