// Deliberately broken plugins, one per compile definition, for the loader's refusal tests.
#include <stdexcept>

#include <boost/dll/alias.hpp>

#include "kiln/kiln.hpp"

namespace {
using namespace kiln;

[[maybe_unused]] Manifest good_manifest(const char* name) {
  Manifest m;
  m.name = name;
  m.version = "1.0.0";
  m.description = "broken on purpose";
  m.license = "Apache-2.0";
  return m;
}

#if defined(KILN_BROKEN_WRONG_ABI)
Manifest manifest() {
  return good_manifest("wrong_abi");
}
constexpr kiln_build_stamp wrong_stamp() {
  kiln_build_stamp s = make_build_stamp();
  s.abi_version = 999;
  return s;
}
}  // namespace
extern "C" __attribute__((visibility("default"))) const kiln_build_stamp kiln_build_stamp_v1 =
    wrong_stamp();
BOOST_DLL_ALIAS(manifest, kiln_plugin_v1)

#elif defined(KILN_BROKEN_WRONG_BOOST)
Manifest manifest() {
  return good_manifest("wrong_boost");
}
constexpr kiln_build_stamp wrong_stamp() {
  kiln_build_stamp s = make_build_stamp();
  s.boost_version = 107400;
  return s;
}
}  // namespace
extern "C" __attribute__((visibility("default"))) const kiln_build_stamp kiln_build_stamp_v1 =
    wrong_stamp();
BOOST_DLL_ALIAS(manifest, kiln_plugin_v1)

#elif defined(KILN_BROKEN_NO_ENTRY)
}  // namespace
// The stamp is right, but the manifest entry point is missing.
extern "C" __attribute__((visibility("default"))) const kiln_build_stamp kiln_build_stamp_v1 =
    ::kiln::make_build_stamp();

#elif defined(KILN_BROKEN_NO_STAMP)
Manifest manifest() {
  return good_manifest("no_stamp");
}
}  // namespace
BOOST_DLL_ALIAS(manifest, kiln_plugin_v1)

#elif defined(KILN_BROKEN_THROWING_MANIFEST)
Manifest manifest() {
  throw std::runtime_error("manifest exploded");
}
}  // namespace
KILN_PLUGIN(manifest)

#elif defined(KILN_BROKEN_THROWING_TOOL_FACTORY)
Manifest manifest() {
  Manifest m = good_manifest("throwing_tool_factory");
  ToolDecl t;
  t.name = "broken.tool";
  t.factory = [](HostServices&) -> std::shared_ptr<Tool> {
    throw std::runtime_error("tool factory exploded");
  };
  m.tools.push_back(std::move(t));
  return m;
}
}  // namespace
KILN_PLUGIN(manifest)

#elif defined(KILN_BROKEN_THROWING_NODE_FACTORY)
Manifest manifest() {
  Manifest m = good_manifest("throwing_node_factory");
  m.nodes.push_back(NodeDecl::make<nodes::ToolStrategy>(
      "exploding", "throws when created",
      [](const NodeContext&) -> std::shared_ptr<nodes::ToolStrategy> {
        throw std::runtime_error("node factory exploded");
      }));
  return m;
}
}  // namespace
KILN_PLUGIN(manifest)

#elif defined(KILN_BROKEN_DUPLICATE_TOOL)
class Noop final : public Tool {
 public:
  ToolOutcome invoke(const boost::json::value&, const ToolContext&) override {
    return ToolResult{boost::json::object{}, {}};
  }
};
Manifest manifest() {
  Manifest m = good_manifest("duplicate_tool");
  for (int i = 0; i < 2; ++i) {
    ToolDecl t;
    t.name = "dup.tool";
    t.factory = [](HostServices&) { return std::make_shared<Noop>(); };
    m.tools.push_back(std::move(t));
  }
  return m;
}
}  // namespace
KILN_PLUGIN(manifest)

#elif defined(KILN_BROKEN_DUPLICATE_NODE)
// Claims the kernel's own default node name.
Manifest manifest() {
  Manifest m = good_manifest("duplicate_node");
  m.nodes.push_back(NodeDecl::make<nodes::ToolStrategy>(
      "static", "collides with the kernel's default node", [](const NodeContext& ctx) {
        return std::make_shared<nodes::StaticToolStrategy>(
            nodes::ToolStrategySettings::from_json(ctx.kind_config));
      }));
  return m;
}
}  // namespace
KILN_PLUGIN(manifest)

#elif defined(KILN_BROKEN_DEBUG_CONTAINERS)
// A good plugin built with -D_GLIBCXX_DEBUG (tests/CMakeLists.txt): its std::string and vectors
// are not the kernel's.
Manifest manifest() {
  return good_manifest("debug_containers");
}
}  // namespace
KILN_PLUGIN(manifest)

#else
#error "define one KILN_BROKEN_* variant"
#endif
