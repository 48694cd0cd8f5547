// The front end of Piper voices (phoneme_type "espeak"): libespeak-ng's IPA phonemes, one call
// per clause, with the clause's punctuation re-attached as Piper's phonemizer does. Returns one
// string per Unicode code point (Piper's phoneme_id_map is keyed by code point).
#pragma once

#include <string>
#include <vector>

namespace kiln::tts {

// Throws std::runtime_error when libespeak-ng cannot start or does not know `espeak_voice`.
std::vector<std::string> espeak_phonemes(const std::string& sentence,
                                         const std::string& espeak_voice);

}  // namespace kiln::tts
