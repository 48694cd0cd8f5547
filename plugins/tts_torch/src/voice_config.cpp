#include "voice_config.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <boost/json.hpp>

namespace kiln::tts {

namespace fs = std::filesystem;
namespace json = boost::json;

VoiceConfig read_voice_config(const fs::path& dir) {
  const fs::path file = dir / "voice.json";
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot read the voice config");
  std::stringstream ss;
  ss << in.rdbuf();
  json::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_object())
    throw std::runtime_error(file.string() + ": not a JSON object (" + ec.message() + ")");
  const auto& o = v.as_object();
  auto fail = [&](const std::string& field, const std::string& want) {
    return std::runtime_error(file.string() + ": field '" + field + "' " + want);
  };
  VoiceConfig c;
  c.id = dir.filename().string();
  c.dir = dir;
  const auto* audio = o.if_contains("audio");
  const auto* rate =
      audio && audio->is_object() ? audio->as_object().if_contains("sample_rate") : nullptr;
  if (!rate || !rate->is_int64() || rate->as_int64() < 8000 || rate->as_int64() > 96000)
    throw fail("audio.sample_rate", "must be an integer between 8000 and 96000");
  c.sample_rate = static_cast<int>(rate->as_int64());
  c.phoneme_type = "espeak";  // Piper's default
  if (const auto* t = o.if_contains("phoneme_type")) {
    if (!t->is_string()) throw fail("phoneme_type", "must be a string");
    c.phoneme_type = std::string(t->as_string());
  }
  if (c.phoneme_type != "espeak" && c.phoneme_type != "flite")
    throw fail("phoneme_type",
               "is '" + c.phoneme_type + "'; this engine reads \"espeak\" and \"flite\" voices");
  if (const auto* e = o.if_contains("espeak"); e && e->is_object())
    if (const auto* ev = e->as_object().if_contains("voice"); ev && ev->is_string())
      c.espeak_voice = std::string(ev->as_string());
  if (const auto* l = o.if_contains("language"); l && l->is_object())
    if (const auto* code = l->as_object().if_contains("code"); code && code->is_string())
      c.language = std::string(code->as_string());
  if (c.language.empty()) c.language = c.espeak_voice;
  if (const auto* inf = o.if_contains("inference"); inf && inf->is_object()) {
    auto num = [&](const char* k, double* out) {
      if (const auto* x = inf->as_object().if_contains(k)) {
        if (!x->is_number()) throw fail(std::string("inference.") + k, "must be a number");
        *out = x->to_number<double>();
      }
    };
    num("length_scale", &c.length_scale);
    num("noise_scale", &c.noise_scale);
    num("noise_w", &c.noise_w);
  }
  if (const auto* k = o.if_contains("kiln"); k && k->is_object())
    if (const auto* d = k->as_object().if_contains("description"); d && d->is_string())
      c.description = std::string(d->as_string());
  if (const auto* n = o.if_contains("num_speakers"); n && n->is_int64())
    c.num_speakers = static_cast<int>(n->as_int64());
  const auto* map = o.if_contains("phoneme_id_map");
  if (!map || !map->is_object() || map->as_object().empty())
    throw fail("phoneme_id_map", "must be a non-empty object of symbol -> [ids]");
  for (const auto& kv : map->as_object()) {
    if (!kv.value().is_array())
      throw fail("phoneme_id_map." + std::string(kv.key()), "must be an array");
    std::vector<std::int64_t> ids;
    for (const auto& id : kv.value().as_array()) {
      if (!id.is_int64() || id.as_int64() < 0)
        throw fail("phoneme_id_map." + std::string(kv.key()), "must hold non-negative integers");
      ids.push_back(id.as_int64());
    }
    c.phoneme_id_map[std::string(kv.key())] = std::move(ids);
  }
  for (const char* required : {"_", "^", "$"})
    if (!c.phoneme_id_map.count(required))
      throw fail(std::string("phoneme_id_map.") + required, "is missing (Piper's pad/BOS/EOS)");
  if (!fs::exists(dir / "model.pt"))
    throw std::runtime_error((dir / "model.pt").string() +
                             ": missing; a voice folder holds voice.json and model.pt");
  return c;
}

std::vector<fs::path> discover_voices(const std::vector<fs::path>& dirs) {
  std::vector<fs::path> out;
  std::set<std::string> seen;
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    std::vector<fs::path> here;
    if (fs::exists(d / "voice.json")) {
      here.push_back(d);
    } else {
      for (const auto& e : fs::directory_iterator(d, ec))
        if (e.is_directory() && fs::exists(e.path() / "voice.json")) here.push_back(e.path());
    }
    std::sort(here.begin(), here.end());
    for (auto& p : here)
      if (seen.insert(p.filename().string()).second) out.push_back(p);  // first dir wins
  }
  return out;
}

}  // namespace kiln::tts
