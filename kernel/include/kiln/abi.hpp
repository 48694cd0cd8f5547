// kiln/abi.hpp — the kernel ABI version and the C-layout build stamp.
// The stamp is the first thing the kernel reads from a plugin: it is plain C data, so it can be
// compared before any C++ type of the plugin is touched (see docs/architecture/plugin-boundary.md).
#pragma once

#include <cstdint>

#include <boost/version.hpp>

namespace kiln {

// Bumped whenever a type that crosses the plugin boundary changes layout or meaning.
// 2: ToolDecl::actuates. 3: HostServices::selected_node, ToolContext::approved_by.
// (Keep the definition on one line: CMake and the SDK test read it.)
inline constexpr std::uint32_t kAbiVersion = 3;
// The kiln release these headers belong to.
inline constexpr const char* kVersion = "0.1.0";
// Format of the manifest returned by the `kiln_plugin_v1` entry point.
inline constexpr std::uint32_t kManifestFormat = 1;

inline constexpr std::uint32_t kStampMagic = 0x4b494c4e;  // "KILN"

enum class CompilerId : std::uint32_t { kUnknown = 0, kGcc = 1, kClang = 2 };

}  // namespace kiln

extern "C" {

// Plain C layout: no C++ types, fixed-width fields only. Never reorder; append and bump
// stamp_size-checked fields instead.
struct kiln_build_stamp {
  std::uint32_t magic;            // kiln::kStampMagic
  std::uint32_t stamp_size;       // sizeof(kiln_build_stamp) as the plugin saw it
  std::uint32_t abi_version;      // kiln::kAbiVersion
  std::uint32_t compiler_id;      // kiln::CompilerId
  std::uint32_t compiler_major;   // e.g. 12 for g++ 12
  std::uint32_t cxx11_abi;        // _GLIBCXX_USE_CXX11_ABI (libstdc++ dual ABI)
  std::uint32_t boost_version;    // BOOST_VERSION, e.g. 108100
  std::uint32_t manifest_format;  // kiln::kManifestFormat
  char kiln_version[32];          // kiln::kVersion, NUL-terminated
  // 1 when built with _GLIBCXX_DEBUG: libstdc++'s checked containers lay std::vector and others
  // out differently, so one side's std::string or vector is garbage to the other.
  std::uint32_t debug_containers;
};

}  // extern "C"

namespace kiln {

constexpr CompilerId current_compiler_id() {
#if defined(__clang__)
  return CompilerId::kClang;
#elif defined(__GNUC__)
  return CompilerId::kGcc;
#else
  return CompilerId::kUnknown;
#endif
}

constexpr std::uint32_t current_compiler_major() {
#if defined(__clang__)
  return __clang_major__;
#elif defined(__GNUC__)
  return __GNUC__;
#else
  return 0;
#endif
}

constexpr std::uint32_t current_debug_containers() {
#if defined(_GLIBCXX_DEBUG)
  return 1;
#else
  return 0;
#endif
}

constexpr std::uint32_t current_cxx11_abi() {
#if defined(_GLIBCXX_USE_CXX11_ABI)
  return _GLIBCXX_USE_CXX11_ABI;
#else
  return 0;
#endif
}

// The stamp of whatever translation unit includes this header: the kernel computes its own,
// a plugin exports its own through KILN_PLUGIN.
constexpr kiln_build_stamp make_build_stamp() {
  kiln_build_stamp s{};
  s.magic = kStampMagic;
  s.stamp_size = sizeof(kiln_build_stamp);
  s.abi_version = kAbiVersion;
  s.compiler_id = static_cast<std::uint32_t>(current_compiler_id());
  s.compiler_major = current_compiler_major();
  s.cxx11_abi = current_cxx11_abi();
  s.boost_version = BOOST_VERSION;
  s.manifest_format = kManifestFormat;
  for (int i = 0; kVersion[i] != '\0' && i < 31; ++i) s.kiln_version[i] = kVersion[i];
  s.debug_containers = current_debug_containers();
  return s;
}

constexpr const char* compiler_name(std::uint32_t id) {
  switch (static_cast<CompilerId>(id)) {
    case CompilerId::kGcc:
      return "g++";
    case CompilerId::kClang:
      return "clang++";
    default:
      return "unknown";
  }
}

}  // namespace kiln
