// A voice folder: voice.json (Piper's <voice>.onnx.json format) beside model.pt (TorchScript with
// Piper's inference signature). Parsing is strict about what inference needs and names the file
// and field on error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kiln::tts {

struct VoiceConfig {
  std::string id;  // the folder name
  std::filesystem::path dir;
  int sample_rate = 0;
  std::string phoneme_type;  // "flite" | "espeak"
  std::string espeak_voice = "en-us";
  std::string language;
  std::string description;
  double length_scale = 1.0, noise_scale = 0.667, noise_w = 0.8;
  std::map<std::string, std::vector<std::int64_t>> phoneme_id_map;
  int num_speakers = 1;
};

// Reads DIR/voice.json. Throws std::runtime_error naming the file and the field.
VoiceConfig read_voice_config(const std::filesystem::path& dir);

// Voice folders found in `dirs`: each subfolder holding voice.json (or a dir that is one itself).
std::vector<std::filesystem::path> discover_voices(const std::vector<std::filesystem::path>& dirs);

}  // namespace kiln::tts
