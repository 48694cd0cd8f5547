// Loading one plugin library: stage 1 reads the C build stamp, stage 2 the C++ manifest.
// Every refusal is a PluginLoadError with one line naming the plugin, the field, the expected
// and actual values, and the fix.
#pragma once

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include "kiln/abi.hpp"
#include "kiln/plugin.hpp"

namespace kiln::plugins {

class PluginLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LoadedLibrary {
  std::filesystem::path path;
  std::string sha256;
  Manifest manifest;
  // Shared by every node and tool object made from this library; never unloaded (RTLD_NODELETE).
  std::shared_ptr<boost::dll::shared_library> library;
};

// Compares a plugin's stamp with the kernel's; returns "" when they match, else the refusal
// (without the plugin label).
std::string compare_stamps(const kiln_build_stamp& plugin, const kiln_build_stamp& kernel);

// Both stages plus manifest validation. Throws PluginLoadError.
LoadedLibrary load_library(const std::filesystem::path& path);

// Regular files ending in ".so" in each existing directory, sorted by name per directory.
// Directories that do not exist are reported in `missing`.
std::vector<std::filesystem::path> discover(const std::vector<std::filesystem::path>& dirs,
                                            std::vector<std::filesystem::path>* missing);

}  // namespace kiln::plugins
