#include "flite_frontend.hpp"

#include <cstring>
#include <mutex>
#include <stdexcept>

extern "C" {
#include <flite/cst_ffeatures.h>
#include <flite/cst_phoneset.h>
#include <flite/cst_synth.h>
#include <flite/flite.h>
cst_voice* register_cmu_us_slt(const char* voxdir);
}

namespace kiln::tts {

namespace {

// Text analysis without waveform synthesis: the hooks of flite's own synth method up to and
// including the post-lexical rules. Hook names resolve to the voice's functions when it sets
// them (usenglish sets most), else to these defaults.
const cst_synth_module kFrontEnd[] = {{"tokenizer_func", default_tokenization},
                                      {"textanalysis_func", default_textanalysis},
                                      {"pos_tagger_func", default_pos_tagger},
                                      {"phrasing_func", default_phrasing},
                                      {"lexical_insertion_func", default_lexical_insertion},
                                      {"pause_insertion_func", default_pause_insertion},
                                      {"postlex_func", nullptr},
                                      {nullptr, nullptr}};

char punctuation_symbol(const char* punc) {
  for (const char* p = punc; p && *p; ++p) {
    switch (*p) {
      case ',':
      case ';':
      case ':':
        return ',';
      case '.':
        return '.';
      case '?':
        return '?';
      case '!':
        return '!';
      default:
        break;
    }
  }
  return 0;
}

}  // namespace

struct FliteFrontend::Impl {
  std::mutex mu;
  cst_voice* voice = nullptr;
  const cst_phoneset* phoneset = nullptr;

  bool is_vowel(const char* phone) const {
    const char* vc = phone_feature_string(phoneset, phone, "vc");
    return vc && vc[0] == '+';
  }

  std::vector<FliteSymbol> symbols(cst_utterance* u, bool timed) const {
    std::vector<FliteSymbol> out;
    const cst_item* prev_word = nullptr;
    for (cst_item* s = relation_head(utt_relation(u, "Segment")); s; s = item_next(s)) {
      const char* name = item_feat_string(s, "name");
      const double end = timed ? item_feat_float(s, "end") : -1.0;
      if (std::strcmp(name, "pau") == 0) {
        out.push_back({"pau", end});
        prev_word = nullptr;
        continue;
      }
      const cst_item* word = path_to_item(s, "R:SylStructure.parent.parent");
      if (prev_word && word != prev_word) out.push_back({" ", -1});
      prev_word = word;
      std::string sym = name;
      if (is_vowel(name)) sym += ffeature_int(s, "R:SylStructure.parent.stress") ? '1' : '0';
      out.push_back({std::move(sym), end});
      // After the word's last phone: the punctuation of its token, if this word ends the token.
      const cst_item* next = item_next(s);
      const cst_item* next_word =
          next ? path_to_item(next, "R:SylStructure.parent.parent") : nullptr;
      if (word && next_word != word) {
        if (std::strcmp(ffeature_string(word, "R:Token.n.name"), "0") == 0) {
          if (char p = punctuation_symbol(ffeature_string(word, "R:Token.parent.punc")))
            out.push_back({std::string(1, p), -1});
        }
      }
    }
    return out;
  }
};

FliteFrontend& FliteFrontend::instance() {
  static FliteFrontend f;
  return f;
}

FliteFrontend::FliteFrontend() : impl_(new Impl) {
  flite_init();
  impl_->voice = register_cmu_us_slt(nullptr);
  if (!impl_->voice) throw std::runtime_error("libflite: the cmu_us_slt voice did not register");
  impl_->phoneset = val_phoneset(feat_val(impl_->voice->features, "phoneset"));
}

std::vector<FliteSymbol> FliteFrontend::phonemize(const std::string& sentence) {
  std::lock_guard lock(impl_->mu);
  cst_utterance* u = new_utterance();
  utt_set_input_text(u, sentence.c_str());
  utt_init(u, impl_->voice);
  u = apply_synth_method(u, kFrontEnd);
  if (!u) throw std::runtime_error("libflite could not analyse the sentence");
  auto out = impl_->symbols(u, false);
  delete_utterance(u);
  return out;
}

TeacherUtterance FliteFrontend::teach(const std::string& sentence) {
  std::lock_guard lock(impl_->mu);
  cst_utterance* u = flite_synth_text(sentence.c_str(), impl_->voice);
  if (!u) throw std::runtime_error("libflite could not synthesize the sentence");
  TeacherUtterance t;
  t.symbols = impl_->symbols(u, true);
  const cst_wave* w = utt_wave(u);
  t.sample_rate = cst_wave_sample_rate(w);
  t.samples.assign(w->samples, w->samples + cst_wave_num_samples(w));
  delete_utterance(u);
  return t;
}

std::vector<std::string> FliteFrontend::inventory() {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> out{"pau", " ", ",", ".", "?", "!"};
  for (const char* const* p = impl_->phoneset->phonenames; *p; ++p) {
    if (std::strcmp(*p, "pau") == 0 || std::strcmp(*p, "h#") == 0 || std::strcmp(*p, "brth") == 0)
      continue;
    if (impl_->is_vowel(*p)) {
      out.push_back(std::string(*p) + "0");
      out.push_back(std::string(*p) + "1");
    } else {
      out.push_back(*p);
    }
  }
  return out;
}

std::vector<std::int64_t> to_piper_ids(
    const std::vector<std::string>& symbols,
    const std::map<std::string, std::vector<std::int64_t>>& id_map,
    std::vector<std::string>* unknown) {
  std::vector<std::int64_t> ids;
  auto append = [&](const std::string& s) {
    auto it = id_map.find(s);
    if (it == id_map.end()) return false;
    ids.insert(ids.end(), it->second.begin(), it->second.end());
    return true;
  };
  append("^");
  append("_");
  for (const auto& s : symbols) {
    if (!append(s)) {
      if (unknown) unknown->push_back(s);
      continue;
    }
    append("_");
  }
  append("$");
  return ids;
}

}  // namespace kiln::tts
