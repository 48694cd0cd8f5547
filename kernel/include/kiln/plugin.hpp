// kiln/plugin.hpp — the plugin manifest and the KILN_PLUGIN export macro.
// A plugin exports exactly two symbols: the C build stamp and the `kiln_plugin_v1` manifest
// entry point. Everything else stays hidden (-fvisibility=hidden).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/dll/alias.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "kiln/abi.hpp"
#include "kiln/host.hpp"
#include "kiln/tool.hpp"

namespace kiln {

// What a node factory receives: the host, the kind-wide settings (the `<kind>` config section,
// shared by every node of the kind) and the plugin's own config subtree.
struct NodeContext {
  HostServices& host;
  const boost::json::object& kind_config;
  const boost::json::object& plugin_config;
};

// Node objects cross the boundary type-erased: the factory returns the kind's interface
// converted to shared_ptr<void>. NodeDecl::make<Kind>() is the only way to build one, so the
// pointer always points at a Kind (no RTTI across the boundary; see plugin-boundary.md).
// A factory throws std::invalid_argument when its settings are wrong: the deployment gets a
// configuration error (exit 3) with the message; any other exception means the node cannot run
// here (exit 5).
using ErasedNodeFactory = std::function<std::shared_ptr<void>(const NodeContext&)>;
using ToolFactory = std::function<std::shared_ptr<Tool>(HostServices&)>;

struct NodeDecl {
  std::string kind;
  std::string name;
  std::string description;
  ErasedNodeFactory factory;
  // Parity cases whose difference from the default node is intended; listed in the gate record.
  std::vector<std::string> intended_differences;

  template <class Kind, class F>
  static NodeDecl make(std::string name, std::string description, F factory) {
    NodeDecl d;
    d.kind = Kind::kKind;
    d.name = std::move(name);
    d.description = std::move(description);
    d.factory = [f = std::move(factory)](const NodeContext& ctx) -> std::shared_ptr<void> {
      std::shared_ptr<Kind> node = f(ctx);
      return std::static_pointer_cast<void>(node);
    };
    return d;
  }
};

struct ToolDecl {
  std::string name;  // dotted, e.g. "roast.analyze"
  std::string description;
  boost::json::value input_schema;  // JSON Schema (the subset docs/architecture/tools.md lists)
  boost::json::value output_schema;
  ToolFactory factory;
  // A tool that never blocks (pure computation, bounded time) runs on the caller's thread; any
  // other tool runs on a worker so that its timeout can be enforced.
  bool nonblocking = false;
  // A tool that changes the physical world (a roaster's heater, fan, drum). Policy decides
  // whether it runs at all (actuation.allowed) and whether a person approves each call.
  bool actuates = false;
};

// A config key the plugin accepts under `plugin_config.<plugin>.<key>`.
struct ConfigKeyDecl {
  std::string key;
  std::string type;  // "string" | "integer" | "number" | "boolean" | "array" | "object"
  boost::json::value default_value;
  std::string description;
};

struct Manifest {
  std::string name;
  std::string version;
  std::string description;
  std::string license;
  std::vector<NodeDecl> nodes;
  std::vector<ToolDecl> tools;
  std::vector<ConfigKeyDecl> config_keys;
};

using PluginEntry = Manifest();

}  // namespace kiln

// Exports the build stamp (a constant-initialised C object, readable without running plugin
// code) and the manifest entry point. Use once per plugin, at namespace scope, with a function
// `kiln::Manifest fn()`.
#define KILN_PLUGIN(manifest_fn)                                                                 \
  extern "C" __attribute__((visibility("default"))) const kiln_build_stamp kiln_build_stamp_v1 = \
      ::kiln::make_build_stamp();                                                                \
  BOOST_DLL_ALIAS(manifest_fn, kiln_plugin_v1)
