// libespeak-ng keeps one global synthesizer per process. Every use in a plugin goes through
// espeak_mutex(); two plugins that both link libespeak-ng (tts_torch for Piper voices and
// tts_espeak) each hold their own copy of this mutex, so do not run both at once on one
// process (docs/architecture/tts.md).
#pragma once

#include <mutex>

namespace kiln::tts {

inline std::mutex& espeak_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace kiln::tts
