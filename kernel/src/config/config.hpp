// Typed, layered configuration with provenance.
// Layers, lowest first: built-in defaults < YAML files < environment (KILN_*) < --set key=value.
// Validation is strict: unknown keys, wrong types and bad choices are errors that name the
// file:line:column (or variable, or flag) and the key path. See docs/architecture/config.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "kiln/plugin.hpp"

namespace kiln::config {

enum class Type { kString, kInteger, kNumber, kBoolean, kStringList, kStringMap, kArray, kObject };
std::string_view type_name(Type t);

struct KeyDef {
  std::string path;  // dotted: "gates.dir"
  Type type = Type::kString;
  boost::json::value default_value;
  std::string description;
  std::vector<std::string> choices;  // for strings: the allowed values
  std::optional<std::int64_t> min;   // for integers
  // For numbers and integers: the allowed range (Schema::range).
  std::optional<double> lo = std::nullopt, hi = std::nullopt;
  bool lo_exclusive = false;  // lo itself is not allowed ("> 0")
  // For strings, numbers and the items of string lists: what is wrong with a value (given as
  // its text; "'x' is not ..."), or nullopt when it is fine.
  std::function<std::optional<std::string>(const std::string&)> check = nullptr;
};

// The set of keys the kernel accepts. Plugin keys live under `plugin_config.<plugin>.` and are
// validated once the plugins' manifests are known.
class Schema {
 public:
  void add(KeyDef def);
  // Bounds a number or integer key added before: from `lo` (above it when `lo_exclusive`) to
  // `hi`, either open.
  void range(std::string_view path, std::optional<double> lo, std::optional<double> hi,
             bool lo_exclusive = false);
  const KeyDef* find(std::string_view path) const;
  // True if `path` is a section: some key starts with "path.".
  bool is_section(std::string_view path) const;
  // Direct children names of a section ("" = top level).
  std::vector<std::string> children(std::string_view section) const;
  std::vector<std::string> paths() const;
  const std::vector<KeyDef>& keys() const { return keys_; }

 private:
  std::vector<KeyDef> keys_;
};

// The kernel's schema, with one `nodes.<kind>` key per known node kind.
struct NodeKindInfo {
  std::string kind;
  std::string default_node;
};
Schema kernel_schema(const std::vector<NodeKindInfo>& kinds);

enum class Layer { kDefault, kFile, kEnvironment, kCommandLine, kPluginDefault };

struct Source {
  Layer layer = Layer::kDefault;
  std::string where;  // "config/kiln.yaml:3:5", "KILN_SERVER__PORT", "--set gates.dir=..."
  std::string describe() const;
};

struct Entry {
  boost::json::value value;
  Source source;
};

// All problems found, one per line; what() joins them.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

struct YamlText {
  std::string name;  // shown in messages, e.g. "config/kiln.yaml (embedded)"
  std::string text;
  std::filesystem::path directory;  // for ${config_dir}
};

struct LoadOptions {
  std::vector<YamlText> yaml;                      // in order, later wins
  std::map<std::string, std::string> environment;  // only KILN_* entries matter
  std::vector<std::string> sets;                   // "key=value" from --set
  // The flag a set came from when it was not --set itself ("key=value" -> "--driver lines"),
  // for messages that say where a value came from.
  std::map<std::string, std::string> set_origins;
};

// Environment variables with the KILN_ prefix that are not settings.
inline const std::vector<std::string> kNonSettingVariables = {"KILN_CONFIG", "KILN_API_KEY",
                                                              "KILN_SERVER_URL"};

std::map<std::string, std::string> current_environment();

class Config {
 public:
  // Throws ConfigError listing every problem found.
  static Config load(const Schema& schema, const LoadOptions& options);

  // Validates `plugin_config.*` against the loaded plugins' declared keys and fills in their
  // defaults. Throws ConfigError.
  // Settings of plugins named in `not_loaded` (disabled or skipped) are kept out with a warning
  // instead of an error.
  void apply_plugin_schemas(const std::map<std::string, std::vector<ConfigKeyDecl>>& plugins,
                            const std::set<std::string>& not_loaded = {});

  const Entry* find(std::string_view path) const;
  const Entry& at(std::string_view path) const;  // throws std::out_of_range naming the key
  std::string get_string(std::string_view path) const;
  std::int64_t get_int(std::string_view path) const;
  double get_number(std::string_view path) const;
  bool get_bool(std::string_view path) const;
  std::vector<std::string> get_strings(std::string_view path) const;
  // Every key under `section.` as one object (e.g. "tool_strategy" -> {providers, timeout_ms}).
  boost::json::object section(std::string_view section) const;
  // The validated subtree of one plugin (defaults filled in); empty if it declared nothing.
  boost::json::object plugin_config(std::string_view plugin) const;

  const std::map<std::string, Entry, std::less<>>& entries() const { return entries_; }
  // Directory of the last YAML layer, for ${config_dir} in paths.
  const std::filesystem::path& config_dir() const { return config_dir_; }

 private:
  // A plugin_config value seen before the plugin's declared keys are known.
  struct PendingPluginValue {
    std::string plugin;
    std::string key;
    boost::json::value value;
    Source source;
  };
  std::map<std::string, Entry, std::less<>> entries_;
  std::vector<PendingPluginValue> pending_;
  std::filesystem::path config_dir_;
  friend class Loader;
};

// "${exe_dir}/../plugins" -> absolute path; also ${config_dir}.
std::filesystem::path expand_path(std::string_view raw, const std::filesystem::path& config_dir);

}  // namespace kiln::config
