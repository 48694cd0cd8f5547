// The set of loaded plugins, their nodes and tools, and the hosts lent to them.
// Loading happens in two phases: libraries and manifests first (so plugin config can be
// validated against the declared keys), then host services and tool objects.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "config/config.hpp"
#include "kiln/plugin.hpp"
#include "plugins/loader.hpp"
#include "runtime/metrics.hpp"

namespace kiln::plugins {

inline constexpr const char* kKernelProvider = "kiln";

struct NodeEntry {
  std::string kind;
  std::string name;
  std::string provider;  // plugin name, or "kiln" for nodes built into the kernel
  std::string description;
  std::filesystem::path file;  // the plugin file; empty when built in
  std::string sha256;          // of that file; empty when built in
  std::vector<std::string> intended_differences;
  ErasedNodeFactory factory;
  std::shared_ptr<boost::dll::shared_library> library;  // null when built in
  bool builtin() const { return file.empty(); }
};

struct ToolEntry {
  std::string name;
  std::string provider;
  std::string description;
  boost::json::value input_schema;
  boost::json::value output_schema;
  bool nonblocking = false;
  bool actuates = false;
  ToolFactory factory;
  std::shared_ptr<boost::dll::shared_library> library;
  std::shared_ptr<Tool> tool;  // created by instantiate()
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::string description;
  std::string license;
  std::filesystem::path file;
  std::string sha256;
  std::vector<std::string> nodes;  // "kind/name"
  std::vector<std::string> tools;
  std::vector<ConfigKeyDecl> config_keys;
};

// Keeps `lib` (and `host`, the HostServices the object was created with) alive for as long as
// `obj` or any copy of the returned pointer lives — a tool still running on a worker thread may
// outlive the kernel. `obj` is destroyed first.
template <class T>
std::shared_ptr<T> keep_library_alive(std::shared_ptr<T> obj,
                                      std::shared_ptr<boost::dll::shared_library> lib,
                                      std::shared_ptr<void> host = nullptr) {
  if ((!lib && !host) || !obj) return obj;
  struct Holder {
    std::shared_ptr<boost::dll::shared_library> lib;  // declared first: destroyed last
    std::shared_ptr<void> host;
    std::shared_ptr<T> obj;
  };
  auto h = std::make_shared<Holder>(Holder{std::move(lib), std::move(host), std::move(obj)});
  T* raw = h->obj.get();
  return std::shared_ptr<T>(std::move(h), raw);
}

class PluginRegistry {
 public:
  PluginRegistry(std::shared_ptr<runtime::Metrics> metrics, std::filesystem::path artifacts_root);
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  void add_builtin_node(NodeEntry node);
  void add_builtin_tool(ToolDecl tool);

  // Phase 1. Loads each file; a refused file adds one line to the returned list and nothing
  // to the registry. Names in `disabled` are skipped after their manifest is read.
  std::vector<std::string> load(const std::vector<std::filesystem::path>& files,
                                const std::set<std::string>& disabled);

  // The config keys each loaded plugin declares (for Config::apply_plugin_schemas).
  std::map<std::string, std::vector<ConfigKeyDecl>> declared_config_keys() const;

  // Phase 2. Creates each plugin's HostServices and its tool objects. Throws
  // PluginLoadError naming the plugin and tool whose factory failed.
  // Tools of plugins in `isolated` are not created here (their factories must not run in this
  // process); the caller fills them in (runtime::IsolatedTool).
  void instantiate(const config::Config& config, const std::set<std::string>& isolated = {});
  std::vector<ToolEntry>& mutable_tools() { return tools_; }

  const std::vector<PluginInfo>& plugins() const { return plugins_; }
  const std::vector<NodeEntry>& nodes() const { return nodes_; }
  const std::vector<ToolEntry>& tools() const { return tools_; }
  const NodeEntry* find_node(std::string_view kind, std::string_view name) const;
  std::vector<std::string> node_names(std::string_view kind) const;
  // The host lent to a provider (plugin name or "kiln").
  HostServices& host(const std::string& provider);
  std::shared_ptr<HostServices> shared_host(const std::string& provider);
  // How every host answers HostServices::selected_node (the kernel's resolved instances). Empty
  // until set: hosts answer null.
  using NodeResolver = std::function<std::shared_ptr<void>(std::string_view kind)>;
  void set_node_resolver(NodeResolver resolver);

 private:
  class Host;
  std::shared_ptr<runtime::Metrics> metrics_;
  std::filesystem::path artifacts_root_;
  std::vector<PluginInfo> plugins_;
  std::vector<NodeEntry> nodes_;
  std::vector<ToolEntry> tools_;
  std::map<std::string, std::shared_ptr<Host>> hosts_;
  // Shared with every host; the mutex guards replacing it against calls in flight.
  struct SharedResolver {
    std::mutex mu;
    NodeResolver fn;
  };
  std::shared_ptr<SharedResolver> resolver_ = std::make_shared<SharedResolver>();
};

}  // namespace kiln::plugins
