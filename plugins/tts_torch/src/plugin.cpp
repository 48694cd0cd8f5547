// The tts_torch plugin: node tts_engine/torch (the kind's default).
#include <dlfcn.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kiln/plugin.hpp"
#include "torch_engine.hpp"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// The directory this plugin was loaded from.
fs::path plugin_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&plugin_dir), &info) && info.dli_fname)
    return fs::path(info.dli_fname).parent_path();
  return {};
}

// The voices shipped with kiln: <plugin dir>/../voices (build/voices in a build tree,
// <prefix>/lib/kiln/voices when installed).
fs::path builtin_voices_dir() {
  const auto dir = plugin_dir();
  return dir.empty() ? dir : dir.parent_path() / "voices";
}

// The engine, from support/kiln_tts_torch_engine.so beside the plugin (engine_entry.cpp): opened
// when the node is first built, never closed (LibTorch does not unload).
using MakeEngine = kiln::nodes::TtsEngine* (*)(const kiln::tts::TorchEngineOptions*, std::string*);
MakeEngine engine_entry() {
  static std::mutex mu;
  static MakeEngine make = nullptr;
  std::lock_guard lock(mu);
  if (make) return make;
  const fs::path lib = plugin_dir() / "support" / "kiln_tts_torch_engine.so";
  void* handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    throw std::runtime_error("tts_torch cannot load its engine library " + lib.string() + ": " +
                             dlerror() +
                             " (it is installed with the plugin, in support/ beside it; "
                             "reinstall kiln, or disable the plugin: plugins.disabled)");
  make = reinterpret_cast<MakeEngine>(dlsym(handle, "kiln_tts_torch_engine_v1"));
  if (!make)
    throw std::runtime_error("tts_torch's engine library " + lib.string() +
                             " is not this plugin's version (no kiln_tts_torch_engine_v1); "
                             "reinstall kiln");
  return make;
}

kiln::Manifest manifest() {
  kiln::Manifest m;
  m.name = "tts_torch";
  m.version = "0.1.0";
  m.description =
      "Text to speech on LibTorch: Piper-compatible voices (voice.json + TorchScript model.pt), "
      "with the embedded voice kiln-slt-small";
  m.license = "GPL-3.0-or-later";  // links libespeak-ng (GPL-3.0) for Piper voices
  m.config_keys = {
      {"voices_dirs", "array", json::array{},
       "extra folders searched for voices before the built-in one (a voice is a folder with "
       "voice.json and model.pt; relative paths are relative to the working directory)"},
      {"default_voice", "string", "kiln-slt-small", "voice used when a request names none"},
      {"threads", "integer", 2, "LibTorch intra-op threads for inference"},
      {"load_mode", "string", "strict",
       "strict: a voice that fails to load fails its requests; fallback: its requests are spoken "
       "by the default voice"},
      {"preload", "boolean", true,
       "load the default voice when the node starts (else on first use)"},
  };
  m.nodes.push_back(kiln::NodeDecl::make<kiln::nodes::TtsEngine>(
      "torch", "Piper-compatible TorchScript voices; embedded voice kiln-slt-small",
      [](const kiln::NodeContext& ctx) {
        const auto& c = ctx.plugin_config;
        kiln::tts::TorchEngineOptions o;
        if (const auto* dirs = c.if_contains("voices_dirs"); dirs && dirs->is_array())
          for (const auto& d : dirs->as_array())
            if (d.is_string()) o.voice_dirs.emplace_back(std::string(d.as_string()));
        o.voice_dirs.push_back(builtin_voices_dir());
        if (const auto* v = c.if_contains("default_voice"); v && v->is_string())
          o.default_voice = std::string(v->as_string());
        if (const auto* t = c.if_contains("threads"); t && t->is_int64())
          o.threads = static_cast<int>(t->as_int64());
        if (const auto* l = c.if_contains("load_mode"); l && l->is_string()) {
          const std::string mode(l->as_string());
          if (mode != "strict" && mode != "fallback")
            throw std::runtime_error("plugin_config.tts_torch.load_mode is '" + mode +
                                     "'; use strict or fallback");
          o.strict = mode == "strict";
        }
        if (const auto* p = c.if_contains("preload"); p && p->is_bool()) o.preload = p->as_bool();
        o.max_chars = kiln::nodes::TtsSettings::from_json(ctx.kind_config).max_chars;
        kiln::HostServices* host = &ctx.host;
        o.log = [host](kiln::LogLevel level, const std::string& msg) { host->log(level, msg); };
        std::string error;
        std::shared_ptr<kiln::nodes::TtsEngine> engine(engine_entry()(&o, &error));
        if (!engine) throw std::runtime_error(error);
        return engine;
      }));
  return m;
}

}  // namespace

KILN_PLUGIN(manifest)
