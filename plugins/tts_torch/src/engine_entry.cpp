// The entry point of the tts_torch plugin's engine library (support/kiln_tts_torch_engine.so).
// LibTorch takes about half a second to load, so the plugin links none of it: it opens this
// library when the node is first built (plugin.cpp), and a command that never speaks — most of
// the CLI — never pays for it.
#include <exception>
#include <string>

#include "torch_engine.hpp"

// A new engine, or nullptr with the reason in `error` (no exception crosses the C boundary).
extern "C" __attribute__((visibility("default"))) kiln::nodes::TtsEngine* kiln_tts_torch_engine_v1(
    const kiln::tts::TorchEngineOptions* options, std::string* error) {
  try {
    return new kiln::tts::TorchEngine(*options);
  } catch (const std::exception& e) {
    *error = e.what();
  } catch (...) {
    *error = "the engine failed to start (unknown error)";
  }
  return nullptr;
}
