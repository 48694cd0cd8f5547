#include "plugins/loader.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>

#include <dlfcn.h>

#include <boost/dll/shared_library_load_mode.hpp>

#include "common/sha256.hpp"

namespace kiln::plugins {
namespace fs = std::filesystem;

namespace {

std::string label(const fs::path& path) {
  return "plugin " + path.filename().string() + " (" + path.string() + ")";
}

std::string fix_rebuild() {
  return std::string("rebuild the plugin against kiln ") + kVersion + " (kiln ABI " +
         std::to_string(kAbiVersion) + ")";
}

std::string stamp_version(const kiln_build_stamp& s) {
  return std::string(s.kiln_version, strnlen(s.kiln_version, sizeof s.kiln_version));
}

std::string boost_text(std::uint32_t v) {
  return std::to_string(v / 100000) + "." + std::to_string(v / 100 % 1000) + "." +
         std::to_string(v % 100);
}

bool is_elf(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic,
                                         "\x7f"
                                         "ELF",
                                         4) == 0;
}

const std::regex& name_pattern() {
  static const std::regex re("[a-z][a-z0-9_]*");
  return re;
}

void validate_manifest(const Manifest& m, const std::string& who) {
  auto refuse = [&](const std::string& what) {
    throw PluginLoadError(who + ": invalid manifest: " + what);
  };
  if (!std::regex_match(m.name, name_pattern()))
    refuse("name '" + m.name + "' must match [a-z][a-z0-9_]* (set Manifest::name)");
  if (m.version.empty()) refuse("version is empty (set Manifest::version, e.g. \"1.0.0\")");
  if (m.license.empty()) refuse("license is empty (set Manifest::license, e.g. \"Apache-2.0\")");
  std::set<std::string> nodes;
  for (const auto& n : m.nodes) {
    if (n.kind.empty() || n.name.empty()) refuse("a node has an empty kind or name");
    if (!std::regex_match(n.name, name_pattern()))
      refuse("node name '" + n.name + "' must match [a-z][a-z0-9_]*");
    if (!n.factory) refuse("node " + n.kind + "/" + n.name + " has no factory");
    if (!nodes.insert(n.kind + "/" + n.name).second)
      refuse("duplicate node " + n.kind + "/" + n.name + " (declared twice; remove one)");
  }
  std::set<std::string> tools;
  for (const auto& t : m.tools) {
    if (t.name.empty()) refuse("a tool has an empty name");
    if (!t.factory) refuse("tool " + t.name + " has no factory");
    if (!tools.insert(t.name).second)
      refuse("duplicate tool name '" + t.name + "' (declared twice; remove one)");
    if (!t.input_schema.is_object() && !t.input_schema.is_null())
      refuse("tool " + t.name + ": input_schema must be a JSON Schema object");
    if (!t.output_schema.is_object() && !t.output_schema.is_null())
      refuse("tool " + t.name + ": output_schema must be a JSON Schema object");
  }
  std::set<std::string> keys;
  static const std::set<std::string> kTypes{"string",  "integer", "number",
                                            "boolean", "array",   "object"};
  for (const auto& k : m.config_keys) {
    if (!std::regex_match(k.key, name_pattern()))
      refuse("config key '" + k.key + "' must match [a-z][a-z0-9_]*");
    if (!kTypes.count(k.type))
      refuse("config key '" + k.key + "' has type '" + k.type +
             "' (use string, integer, number, boolean, array or object)");
    if (!keys.insert(k.key).second) refuse("duplicate config key '" + k.key + "'");
  }
}

}  // namespace

std::string compare_stamps(const kiln_build_stamp& p, const kiln_build_stamp& k) {
  auto field = [](const char* name, const std::string& expected, const std::string& actual,
                  const std::string& fix) {
    return std::string("build stamp field ") + name + ": expected " + expected + ", actual " +
           actual + "; " + fix;
  };
  if (p.magic != k.magic)
    return field("magic", std::to_string(k.magic), std::to_string(p.magic),
                 "the library exports kiln_build_stamp_v1 but it is not a kiln stamp");
  if (p.stamp_size != k.stamp_size)
    return field("stamp_size", std::to_string(k.stamp_size), std::to_string(p.stamp_size),
                 fix_rebuild());
  if (p.abi_version != k.abi_version)
    return field("abi_version", std::to_string(k.abi_version), std::to_string(p.abi_version),
                 fix_rebuild());
  if (p.compiler_id != k.compiler_id)
    return field("compiler", compiler_name(k.compiler_id), compiler_name(p.compiler_id),
                 std::string("rebuild the plugin with ") + compiler_name(k.compiler_id) + " " +
                     std::to_string(k.compiler_major));
  if (p.compiler_major != k.compiler_major)
    return field("compiler_major", std::to_string(k.compiler_major),
                 std::to_string(p.compiler_major),
                 std::string("rebuild the plugin with ") + compiler_name(k.compiler_id) + " " +
                     std::to_string(k.compiler_major));
  if (p.cxx11_abi != k.cxx11_abi)
    return field("cxx11_abi", std::to_string(k.cxx11_abi), std::to_string(p.cxx11_abi),
                 "rebuild the plugin with -D_GLIBCXX_USE_CXX11_ABI=" + std::to_string(k.cxx11_abi));
  if (p.debug_containers != k.debug_containers)
    return field("debug_containers", std::to_string(k.debug_containers),
                 std::to_string(p.debug_containers),
                 std::string("rebuild the plugin ") + (k.debug_containers ? "with" : "without") +
                     " -D_GLIBCXX_DEBUG (checked containers have another layout)");
  if (p.boost_version != k.boost_version)
    return field("boost_version", boost_text(k.boost_version), boost_text(p.boost_version),
                 "rebuild the plugin against Boost " + boost_text(k.boost_version));
  if (p.manifest_format != k.manifest_format)
    return field("manifest_format", std::to_string(k.manifest_format),
                 std::to_string(p.manifest_format), fix_rebuild());
  if (stamp_version(p) != stamp_version(k))
    return field("kiln_version", stamp_version(k), stamp_version(p), fix_rebuild());
  return {};
}

LoadedLibrary load_library(const fs::path& raw_path) {
  std::error_code ec;
  const fs::path path = fs::absolute(raw_path, ec).lexically_normal();
  const std::string who = label(path);
  if (!fs::is_regular_file(path, ec))
    throw PluginLoadError(who + ": not a regular file; check plugins.search_paths");
  if (!is_elf(path))
    throw PluginLoadError(who +
                          ": not a shared library (no ELF header); remove it from the "
                          "plugin search path");

  // Stage 1: open with the loader alone and read the stamp — plain C data — before any C++
  // function of the plugin is called. RTLD_NODELETE: the library is never unmapped.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle) {
    const char* err = dlerror();
    throw PluginLoadError(who + ": cannot be opened: " + (err ? err : "unknown dlopen error") +
                          "; install the libraries it needs or rebuild it");
  }
  const auto* stamp = static_cast<const kiln_build_stamp*>(dlsym(handle, "kiln_build_stamp_v1"));
  if (!stamp) {
    dlclose(handle);
    throw PluginLoadError(who +
                          ": missing entry point kiln_build_stamp_v1: not a kiln plugin, "
                          "or built without KILN_PLUGIN(...); add KILN_PLUGIN(your_manifest_fn)");
  }
  static constexpr kiln_build_stamp kKernelStamp = make_build_stamp();
  if (auto why = compare_stamps(*stamp, kKernelStamp); !why.empty()) {
    dlclose(handle);
    throw PluginLoadError(who + ": " + why);
  }
  dlclose(handle);  // RTLD_NODELETE keeps it mapped; Boost.DLL reopens the same handle.

  // Stage 2: the C++ manifest through the Boost.DLL alias.
  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::dll::fs::error_code dll_ec;
  lib->load(
      path,
      static_cast<boost::dll::load_mode::type>(boost::dll::load_mode::rtld_now |
                                               boost::dll::load_mode::rtld_local | RTLD_NODELETE),
      dll_ec);
  if (dll_ec) throw PluginLoadError(who + ": cannot be opened: " + dll_ec.message());
  if (!lib->has("kiln_plugin_v1"))
    throw PluginLoadError(who +
                          ": missing entry point kiln_plugin_v1; export the manifest "
                          "function with KILN_PLUGIN(your_manifest_fn)");
  LoadedLibrary out;
  out.path = path;
  out.library = lib;
  try {
    auto& entry = lib->get_alias<PluginEntry>("kiln_plugin_v1");
    out.manifest = entry();
  } catch (const std::exception& e) {
    throw PluginLoadError(who + ": manifest entry point kiln_plugin_v1 threw: " + e.what() +
                          "; fix the plugin's manifest function");
  } catch (...) {
    throw PluginLoadError(who +
                          ": manifest entry point kiln_plugin_v1 threw a non-standard "
                          "exception; fix the plugin's manifest function");
  }
  validate_manifest(out.manifest,
                    "plugin " +
                        (out.manifest.name.empty() ? path.filename().string() : out.manifest.name) +
                        " (" + path.string() + ")");
  out.sha256 = common::sha256_file(path);
  return out;
}

std::vector<fs::path> discover(const std::vector<fs::path>& dirs, std::vector<fs::path>* missing) {
  std::vector<fs::path> out;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      if (missing) missing->push_back(dir);
      continue;
    }
    std::vector<fs::path> here;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".so" && e.is_regular_file(ec)) here.push_back(e.path());
    std::sort(here.begin(), here.end());
    out.insert(out.end(), here.begin(), here.end());
  }
  return out;
}

}  // namespace kiln::plugins
