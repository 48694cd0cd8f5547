// The plugin boundary: two-stage load, one-line refusals, libraries kept alive.
#define BOOST_TEST_MODULE loader
#include <fstream>

#include <boost/test/unit_test.hpp>

#include "plugins/loader.hpp"
#include "plugins/registry.hpp"
#include "runtime/kernel.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

fs::path test_plugin(const std::string& name) {
  return fs::path(KILN_TEST_PLUGIN_DIR) / name / (name + ".so");
}

std::string refusal(const fs::path& p) {
  try {
    plugins::load_library(p);
  } catch (const plugins::PluginLoadError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

bool one_line(const std::string& s) {
  return !s.empty() && s.find('\n') == std::string::npos;
}

runtime::BootOptions boot_with(const std::vector<std::string>& dirs,
                               std::vector<std::string> extra_sets = {}) {
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  std::string list = "plugins.search_paths=[";
  for (std::size_t i = 0; i < dirs.size(); ++i) list += (i ? "," : "") + dirs[i];
  o.sets = {list + "]"};
  for (auto& s : extra_sets) o.sets.push_back(std::move(s));
  return o;
}

std::string boot_error(const runtime::BootOptions& o, int* code = nullptr) {
  try {
    runtime::Kernel::boot(o);
  } catch (const runtime::BootError& e) {
    if (code) *code = e.exit_code();
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_good_plugin_loads_with_its_manifest) {
  auto lib = plugins::load_library(test_plugin("test_tools"));
  BOOST_TEST(lib.manifest.name == "test_tools");
  BOOST_TEST(lib.manifest.version == "1.2.3");
  BOOST_TEST(lib.manifest.tools.size() == 12u);
  BOOST_TEST(lib.sha256.size() == 64u);
}

BOOST_AUTO_TEST_CASE(wrong_abi_version_is_refused_naming_the_field) {
  auto msg = refusal(test_plugin("broken_wrong_abi"));
  BOOST_TEST(one_line(msg), msg);
  BOOST_TEST(contains(msg, "broken_wrong_abi.so"), msg);
  BOOST_TEST(contains(msg, "build stamp field abi_version: expected " +
                               std::to_string(kAbiVersion) + ", actual 999"),
             msg);
  BOOST_TEST(contains(msg, "rebuild the plugin against kiln"), msg);
}

BOOST_AUTO_TEST_CASE(wrong_boost_version_is_refused_naming_the_field) {
  auto msg = refusal(test_plugin("broken_wrong_boost"));
  BOOST_TEST(one_line(msg), msg);
  BOOST_TEST(contains(msg, "boost_version: expected 1.81.0, actual 1.74.0"), msg);
  BOOST_TEST(contains(msg, "rebuild the plugin against Boost 1.81.0"), msg);
}

// Built with -D_GLIBCXX_DEBUG, a plugin's std::string and vectors have another layout: loading
// its manifest crashed every command, so the stamp says it first.
BOOST_AUTO_TEST_CASE(checked_containers_are_refused_before_the_manifest) {
  auto msg = refusal(test_plugin("broken_debug_containers"));
  BOOST_TEST(one_line(msg), msg);
  BOOST_TEST(contains(msg,
                      "build stamp field debug_containers: expected 0, actual 1; rebuild the "
                      "plugin without -D_GLIBCXX_DEBUG"),
             msg);
}

BOOST_AUTO_TEST_CASE(every_stamp_field_is_compared) {
  const kiln_build_stamp good = make_build_stamp();
  BOOST_TEST(plugins::compare_stamps(good, good).empty());
  auto differs = [&](auto mutate, const std::string& field) {
    kiln_build_stamp s = good;
    mutate(s);
    auto why = plugins::compare_stamps(s, good);
    BOOST_TEST(contains(why, "field " + field + ":"), field << " -> " << why);
  };
  differs([](auto& s) { s.magic = 1; }, "magic");
  differs([](auto& s) { s.stamp_size = 4; }, "stamp_size");
  differs([](auto& s) { s.abi_version = 7; }, "abi_version");
  differs([](auto& s) { s.compiler_id = 2; }, "compiler");
  differs([](auto& s) { s.compiler_major = 11; }, "compiler_major");
  differs([](auto& s) { s.cxx11_abi = s.cxx11_abi ? 0 : 1; }, "cxx11_abi");
  differs([](auto& s) { s.boost_version = 108300; }, "boost_version");
  differs([](auto& s) { s.debug_containers = 1; }, "debug_containers");
  differs([](auto& s) { s.manifest_format = 9; }, "manifest_format");
  differs([](auto& s) { s.kiln_version[0] = '9'; }, "kiln_version");
}

BOOST_AUTO_TEST_CASE(missing_entry_points_are_refused) {
  auto no_entry = refusal(test_plugin("broken_no_entry"));
  BOOST_TEST(one_line(no_entry), no_entry);
  BOOST_TEST(contains(no_entry, "missing entry point kiln_plugin_v1"), no_entry);
  auto no_stamp = refusal(test_plugin("broken_no_stamp"));
  BOOST_TEST(one_line(no_stamp), no_stamp);
  BOOST_TEST(contains(no_stamp, "missing entry point kiln_build_stamp_v1"), no_stamp);
}

BOOST_AUTO_TEST_CASE(a_throwing_manifest_is_refused) {
  auto msg = refusal(test_plugin("broken_throwing_manifest"));
  BOOST_TEST(one_line(msg), msg);
  BOOST_TEST(contains(msg, "kiln_plugin_v1 threw: manifest exploded"), msg);
}

BOOST_AUTO_TEST_CASE(a_duplicate_tool_name_is_refused) {
  auto msg = refusal(test_plugin("broken_duplicate_tool"));
  BOOST_TEST(one_line(msg), msg);
  BOOST_TEST(contains(msg, "duplicate tool name 'dup.tool'"), msg);
}

BOOST_AUTO_TEST_CASE(a_file_that_is_not_a_shared_library_is_refused) {
  test::TempDir dir;
  auto fake = dir.path() / "fake.so";
  std::ofstream(fake) << "this is a text file\n";
  auto msg = refusal(fake);
  BOOST_TEST(one_line(msg), msg);
  BOOST_TEST(contains(msg, "fake.so"), msg);
  BOOST_TEST(contains(msg, "not a shared library"), msg);
  // An ELF file that is not a loadable library: a truncated copy of a real plugin.
  auto truncated = dir.path() / "truncated.so";
  {
    std::ifstream in(test_plugin("test_tools"), std::ios::binary);
    std::string head(256, '\0');
    in.read(head.data(), 256);
    std::ofstream(truncated, std::ios::binary) << head;
  }
  auto msg2 = refusal(truncated);
  BOOST_TEST(one_line(msg2), msg2);
  BOOST_TEST(contains(msg2, "cannot be opened"), msg2);
}

BOOST_AUTO_TEST_CASE(a_duplicate_node_across_providers_is_refused) {
  int code = 0;
  auto msg =
      boot_error(boot_with({test_plugin("broken_duplicate_node").parent_path().string()}), &code);
  BOOST_TEST(code == runtime::kExitPlugin);
  BOOST_TEST(
      contains(msg, "duplicate node tool_strategy/static, already provided by kiln (built in)"),
      msg);
  BOOST_TEST(contains(msg,
                      "rename it in the one that should not have it, or list that plugin in "
                      "plugins.disabled"),
             msg);
}

BOOST_AUTO_TEST_CASE(a_throwing_tool_factory_stops_startup_naming_the_tool) {
  int code = 0;
  auto msg = boot_error(
      boot_with({test_plugin("broken_throwing_tool_factory").parent_path().string()}), &code);
  BOOST_TEST(code == runtime::kExitPlugin);
  BOOST_TEST(contains(msg, "factory of tool 'broken.tool' threw: tool factory exploded"), msg);
}

BOOST_AUTO_TEST_CASE(a_throwing_node_factory_fails_when_the_node_is_selected) {
  auto dir = test_plugin("broken_throwing_node_factory").parent_path().string();
  int code = 0;
  auto msg =
      boot_error(boot_with({dir}, {"nodes.tool_strategy=exploding", "gates.enforce=warn"}), &code);
  BOOST_TEST(code == runtime::kExitPlugin);
  BOOST_TEST(contains(msg,
                      "node tool_strategy/exploding (provider throwing_node_factory): "
                      "factory threw: node factory exploded"),
             msg);
  // Not selected: it does not matter.
  BOOST_CHECK_NO_THROW(runtime::Kernel::boot(boot_with({dir})));
}

BOOST_AUTO_TEST_CASE(on_error_skip_starts_without_broken_plugins) {
  auto o = boot_with({test_plugin("broken_wrong_abi").parent_path().string(),
                      test_plugin("test_tools").parent_path().string()},
                     {"plugins.on_error=skip"});
  auto k = runtime::Kernel::boot(o);
  BOOST_TEST(k->registry().plugins().size() == 1u);
  BOOST_TEST(k->warnings().size() == 1u);
  BOOST_TEST(contains(k->warnings()[0], "abi_version"));
  o.sets.back() = "plugins.on_error=fail";
  int code = 0;
  auto msg = boot_error(o, &code);
  BOOST_TEST(code == runtime::kExitPlugin);
  BOOST_TEST(contains(msg, "abi_version"), msg);
}

BOOST_AUTO_TEST_CASE(disabled_plugins_are_not_loaded) {
  auto k = runtime::Kernel::boot(boot_with({test_plugin("test_tools").parent_path().string()},
                                           {"plugins.disabled=[test_tools]"}));
  BOOST_TEST(k->registry().plugins().empty());
}

BOOST_AUTO_TEST_CASE(tool_objects_keep_their_library_alive) {
  std::shared_ptr<Tool> tool;
  {
    auto k = runtime::Kernel::boot(boot_with({test_plugin("test_tools").parent_path().string()}));
    for (const auto& t : k->registry().tools())
      if (t.name == "test.echo") tool = t.tool;
  }  // kernel, registry and every other handle to the library are gone
  BOOST_REQUIRE(tool);
  auto out = tool->invoke(boost::json::object{{"text", "still here"}}, ToolContext{});
  BOOST_REQUIRE(out.ok());
  BOOST_TEST(out.value().output.as_object().at("text").as_string() == "still here");
}

BOOST_AUTO_TEST_CASE(only_the_two_entry_points_are_exported) {
  auto r = test::run({"/usr/bin/nm", "-D", "--defined-only",
                      (fs::path(KILN_PLUGIN_DIR) / "kiln_strategy_rules.so").string()});
  BOOST_REQUIRE(r.exit_code == 0);
  std::vector<std::string> names;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (auto sp = line.rfind(' '); sp != std::string::npos) names.push_back(line.substr(sp + 1));
  std::sort(names.begin(), names.end());
  BOOST_TEST(names == (std::vector<std::string>{"kiln_build_stamp_v1", "kiln_plugin_v1"}), r.out);
}

BOOST_AUTO_TEST_CASE(discovery_skips_missing_dirs_and_non_plugins) {
  test::TempDir dir;
  std::ofstream(dir.path() / "notes.txt") << "x";
  fs::copy_file(test_plugin("test_tools"), dir.path() / "b.so");
  fs::copy_file(test_plugin("test_alt"), dir.path() / "a.so");
  std::vector<fs::path> missing;
  auto found = plugins::discover({dir.path() / "nope", dir.path()}, &missing);
  BOOST_TEST(found.size() == 2u);
  BOOST_TEST(found[0].filename() == "a.so");
  BOOST_TEST(missing.size() == 1u);
}
