#include "espeak_phonemizer.hpp"

#include <espeak-ng/speak_lib.h>

#include <stdexcept>

#include "espeak_lock.hpp"

namespace kiln::tts {

namespace {

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
    if (i + n > s.size()) n = s.size() - i;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

bool is_clause_end(char c) {
  return c == ',' || c == ';' || c == ':' || c == '.' || c == '!' || c == '?';
}

}  // namespace

std::vector<std::string> espeak_phonemes(const std::string& sentence,
                                         const std::string& espeak_voice) {
  std::lock_guard lock(espeak_mutex());
  static int rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr, 0);
  if (rate <= 0)
    throw std::runtime_error("libespeak-ng did not initialize (is espeak-ng-data installed?)");
  if (espeak_SetVoiceByName(espeak_voice.c_str()) != EE_OK)
    throw std::runtime_error("libespeak-ng has no voice '" + espeak_voice +
                             "' (voice.json espeak.voice); `espeak-ng --voices` lists them");
  std::string ipa;
  std::size_t start = 0;
  while (start < sentence.size()) {
    std::size_t end = start;
    while (end < sentence.size() && !is_clause_end(sentence[end])) ++end;
    const std::string clause = sentence.substr(start, end - start);
    std::string phonemes;
    const void* p = clause.c_str();
    while (p != nullptr) {
      const char* ph = espeak_TextToPhonemes(&p, espeakCHARS_UTF8, espeakPHONEMES_IPA);
      if (ph && *ph) {
        if (!phonemes.empty()) phonemes += ' ';
        phonemes += ph;
      }
    }
    if (!phonemes.empty()) {
      if (!ipa.empty() && ipa.back() != ' ') ipa += ' ';
      ipa += phonemes;
    }
    if (end < sentence.size()) ipa += sentence[end];  // the punctuation, as Piper keeps it
    start = end + 1;
  }
  return code_points(ipa);
}

}  // namespace kiln::tts
