// kiln/host.hpp — HostServices: what the kernel lends a plugin.
// A plugin reaches the kernel only through this interface: logging, its own config subtree,
// the clock, metrics, an artifact directory and the nodes the deployment selected. It never sees
// kernel internals.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

namespace kiln {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

class HostServices {
 public:
  virtual ~HostServices() = default;

  // Logs through the kernel's logger, tagged with the plugin's name.
  virtual void log(LogLevel level, std::string_view message) = 0;
  // The plugin's own config subtree (`plugin_config.<plugin>`), already validated against the
  // keys its manifest declares, with declared defaults filled in.
  virtual const boost::json::object& config() const = 0;
  virtual std::chrono::system_clock::time_point now() const = 0;
  // Adds `delta` to the counter `kiln_plugin_<name>_total{plugin="..."}` on the /metrics of the
  // process the plugin runs in (`kiln serve`; characters a metric name cannot hold become '_').
  virtual void count(std::string_view name, double delta = 1.0) = 0;
  // A directory the plugin may write artifacts into; created on first use.
  virtual std::filesystem::path artifact_dir() = 0;
  // The plugin's name as its manifest declares it.
  virtual const std::string& plugin_name() const = 0;
  // The node the deployment selected for `kind` (resolved and gated by the kernel), as the
  // kind's interface type-erased; null when the kind is off or nodes are not resolved here (a
  // tool running isolated in `kiln node-host`). Use node<Kind>().
  virtual std::shared_ptr<void> selected_node(std::string_view kind) = 0;

  // The selected node of a kind whose SDK header declares kKind, e.g. node<EventDetector>().
  template <class Kind>
  std::shared_ptr<Kind> node() {
    return std::static_pointer_cast<Kind>(selected_node(Kind::kKind));
  }
};

}  // namespace kiln
