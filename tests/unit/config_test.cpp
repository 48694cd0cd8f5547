// Typed, layered config: precedence, provenance and every kind of error a user can make.
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include "common/strings.hpp"
#include "config/config.hpp"

namespace json = boost::json;
using namespace kiln::config;

namespace {

Schema schema() {
  return kernel_schema({{"tool_strategy", "static"}});
}

Config load(const std::string& yaml, std::map<std::string, std::string> env = {},
            std::vector<std::string> sets = {}) {
  LoadOptions o;
  o.yaml.push_back({"deploy.yaml", yaml, {}});
  o.environment = std::move(env);
  o.sets = std::move(sets);
  return Config::load(schema(), o);
}

// The message of the ConfigError thrown by `f`, or "" if none was thrown.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(defaults_apply_when_nothing_is_set) {
  auto c = load("");
  BOOST_TEST(c.get_string("gates.dir") == "var/gates");
  BOOST_TEST(c.get_string("nodes.tool_strategy") == "static");
  BOOST_TEST(c.get_int("tool_strategy.timeout_ms") == 30000);
  BOOST_TEST(c.at("gates.dir").source.describe() == "built-in default");
}

BOOST_AUTO_TEST_CASE(layers_override_in_order_and_remember_their_source) {
  const std::string yaml = "gates:\n  dir: /from/file\n  enforce: warn\nlog:\n  level: debug\n";
  auto c = load(yaml, {{"KILN_GATES__DIR", "/from/env"}, {"KILN_LOG__LEVEL", "error"}},
                {"log.level=trace"});
  BOOST_TEST(c.get_string("gates.dir") == "/from/env");
  BOOST_TEST(c.at("gates.dir").source.describe() == "environment KILN_GATES__DIR");
  BOOST_TEST(c.get_string("gates.enforce") == "warn");
  BOOST_TEST(c.at("gates.enforce").source.describe() == "deploy.yaml:3:3");
  BOOST_TEST(c.get_string("log.level") == "trace");
  BOOST_TEST(c.at("log.level").source.describe() == "command line --set log.level=trace");
}

BOOST_AUTO_TEST_CASE(later_files_win) {
  LoadOptions o;
  o.yaml.push_back({"a.yaml", "gates:\n  dir: /a\n", {}});
  o.yaml.push_back({"b.yaml", "gates:\n  dir: /b\n", {}});
  auto c = Config::load(schema(), o);
  BOOST_TEST(c.get_string("gates.dir") == "/b");
  BOOST_TEST(c.at("gates.dir").source.describe() == "b.yaml:2:3");
}

BOOST_AUTO_TEST_CASE(node_alias_variable_selects_a_node) {
  auto c = load("", {{"KILN_TOOL_STRATEGY_NODE", "rules"}});
  BOOST_TEST(c.get_string("nodes.tool_strategy") == "rules");
  BOOST_TEST(c.at("nodes.tool_strategy").source.describe() ==
             "environment KILN_TOOL_STRATEGY_NODE");
  auto d = load("", {{"KILN_NODES__TOOL_STRATEGY", "rules"}});
  BOOST_TEST(d.at("nodes.tool_strategy").source.describe() ==
             "environment KILN_NODES__TOOL_STRATEGY");
}

BOOST_AUTO_TEST_CASE(conflicting_node_variables_are_an_error) {
  auto msg = error_of([] {
    load("", {{"KILN_TOOL_STRATEGY_NODE", "rules"}, {"KILN_NODES__TOOL_STRATEGY", "static"}});
  });
  BOOST_TEST(contains(msg, "select different nodes"));
}

BOOST_AUTO_TEST_CASE(unknown_key_names_location_and_suggests) {
  auto msg = error_of([] { load("gates:\n  dri: x\n"); });
  BOOST_TEST(contains(msg, "deploy.yaml:2:3: gates.dri: unknown key"), msg);
  BOOST_TEST(contains(msg, "did you mean 'gates.dir'"), msg);
  auto top = error_of([] { load("nodse:\n  tool_strategy: rules\n"); });
  BOOST_TEST(contains(top, "deploy.yaml:1:1: nodse: unknown key"), top);
  BOOST_TEST(contains(top, "did you mean 'nodes"), top);
}

BOOST_AUTO_TEST_CASE(a_key_in_the_wrong_section_is_suggested_by_its_name) {
  auto msg = error_of([] { load("", {}, {"http.port=0"}); });
  BOOST_TEST(contains(msg, "http.port: unknown key; did you mean 'server.port'?"), msg);
}

BOOST_AUTO_TEST_CASE(a_list_that_is_not_yaml_says_why) {
  // ${...} inside a flow list is not valid YAML: the refusal says so and how to write it.
  auto msg = error_of(
      [] { load("", {}, {"plugins.search_paths=[/opt/p, ${exe_dir}/../lib/kiln/plugins]"}); });
  BOOST_TEST(contains(msg, "plugins.search_paths: expected a list of strings"), msg);
  BOOST_TEST(contains(msg, "is not valid YAML ("), msg);
  BOOST_TEST(contains(msg, "quote an item holding ${...}"), msg);
  auto quoted = load("", {}, {"plugins.search_paths=[/opt/p, \"${exe_dir}/../lib/kiln/plugins\"]"});
  BOOST_TEST(quoted.at("plugins.search_paths").value.as_array().size() == 2u);
}

BOOST_AUTO_TEST_CASE(wrong_type_names_location_and_key_path) {
  auto msg = error_of([] { load("tool_strategy:\n  timeout_ms: soon\n"); });
  BOOST_TEST(
      contains(msg, "deploy.yaml:2:15: tool_strategy.timeout_ms: expected an integer, got 'soon'"),
      msg);
  auto list = error_of([] { load("plugins:\n  search_paths: /one/dir\n"); });
  BOOST_TEST(contains(list, "plugins.search_paths: expected a list of strings"), list);
  auto section = error_of([] { load("gates: strict\n"); });
  BOOST_TEST(contains(section, "gates: expected a section"), section);
}

BOOST_AUTO_TEST_CASE(choices_and_minimums_are_enforced) {
  auto msg = error_of([] { load("gates:\n  enforce: sometimes\n"); });
  BOOST_TEST(contains(msg, "'sometimes' is not one of strict, warn"), msg);
  auto min = error_of([] { load("", {}, {"tool_strategy.timeout_ms=0"}); });
  BOOST_TEST(contains(min, "must be at least 1"), min);
}

// Values that would make no sense are refused, from any layer, naming the range: a port past
// 65535 once wrapped around, a negative skew refused every envelope.
BOOST_AUTO_TEST_CASE(ranges_are_enforced) {
  auto port = error_of([] { load("server:\n  port: 83638\n"); });
  BOOST_TEST(contains(port, "deploy.yaml:2:9: server.port: must be from 0 to 65535, got 83638"),
             port);
  auto skew = error_of([] { load("", {{"KILN_TELEMETRY__MAX_SKEW_S", "-5"}}); });
  BOOST_TEST(contains(skew, "telemetry.max_skew_s: must be at least 0, got -5"), skew);
  auto speed = error_of([] { load("", {}, {"recorder.speed=0"}); });
  BOOST_TEST(contains(speed, "recorder.speed: must be above 0 and at most 10000, got 0"), speed);
  auto lag = error_of([] { load("", {}, {"event_detector.probe_lag_s=100"}); });
  BOOST_TEST(contains(lag, "must be from 0 to 60"), lag);
  auto nan = error_of([] { load("", {}, {"sessions.silence_s=nan"}); });
  BOOST_TEST(contains(nan, "expected a finite number, got 'nan'"), nan);
  BOOST_TEST(error_of([] { load("server:\n  port: 65535\n"); }).empty());
  BOOST_TEST(error_of([] { load("", {}, {"telemetry_driver.interval_s=0.1"}); }).empty());
  BOOST_TEST(error_of([] { load("", {}, {"telemetry_driver.interval_s=2.5"}); }).empty());
  // An empty storage.path (an unset variable in an environment file) would be a temporary
  // database.
  auto no_db = error_of([] { load("", {{"KILN_STORAGE__PATH", ""}}); });
  BOOST_TEST(contains(no_db, "storage.path: must name the database file"), no_db);
  // Ages are a whole number and a unit; one of no time would release files as they are made.
  auto age = error_of([] { load("", {}, {"missions.keep_files=90"}); });
  BOOST_TEST(contains(age,
                      "missions.keep_files: '90' is not an age: a whole number and s, m, h, "
                      "d or w, up to 100 years (e.g. 90d)"),
             age);
  BOOST_TEST(contains(error_of([] { load("", {}, {"missions.keep_files=1.5d"}); }), "not an age"));
  BOOST_TEST(contains(error_of([] { load("", {}, {"missions.keep_files=-1d"}); }), "not an age"));
  BOOST_TEST(contains(error_of([] { load("", {}, {"missions.keep_files=0d"}); }),
                      "would release every file as it is made"));
  BOOST_TEST(error_of([] { load("", {}, {"missions.keep_files=90d"}); }).empty());
  BOOST_TEST(kiln::common::parse_age("90d")->count() == 90 * 86400);
  BOOST_TEST(kiln::common::parse_age("2w")->count() == 14 * 86400);
  BOOST_TEST(kiln::common::parse_age("30m")->count() == 1800);
  BOOST_TEST(kiln::common::parse_age("12h")->count() == 12 * 3600);
  BOOST_TEST(kiln::common::parse_age("0s")->count() == 0);
  BOOST_TEST(!kiln::common::parse_age("d"));
  BOOST_TEST(!kiln::common::parse_age("999999999999d"));  // past 100 years, and no overflow
  // Device times are tenths of a second.
  auto tenths = error_of([] { load("telemetry_driver:\n  interval_s: 0.25\n"); });
  BOOST_TEST(contains(tenths,
                      "deploy.yaml:2:15: telemetry_driver.interval_s: must be a positive "
                      "multiple of 0.1"),
             tenths);
}

BOOST_AUTO_TEST_CASE(a_name_with_a_part_left_off_or_added_is_suggested) {
  using kiln::common::did_you_mean;
  BOOST_TEST(did_you_mean("bullet", {"sim", "bullet_r1"}) == "; did you mean 'bullet_r1'?");
  BOOST_TEST(did_you_mean("replay_file", {"transport", "replay", "record_raw", "device"}) ==
             "; did you mean 'replay'?");
  // Only a whole part counts, and only one candidate may fit.
  BOOST_TEST(did_you_mean("bul", {"bullet_r1"}).empty());
  BOOST_TEST(did_you_mean("tts", {"tts_torch", "tts_espeak"}).empty());
  BOOST_TEST(did_you_mean("completely_else", {"sim"}).empty());
}

BOOST_AUTO_TEST_CASE(every_problem_is_reported_at_once) {
  try {
    load("gates:\n  dri: x\nlog:\n  level: loud\n", {{"KILN_NOPE__X", "1"}});
    BOOST_FAIL("expected ConfigError");
  } catch (const ConfigError& e) {
    BOOST_TEST(e.problems().size() == 3u);
  }
}

BOOST_AUTO_TEST_CASE(yaml_syntax_error_has_a_location) {
  auto msg = error_of([] { load("gates:\n  dir: [unclosed\n"); });
  BOOST_TEST(contains(msg, "deploy.yaml:"), msg);
  BOOST_TEST(contains(msg, "YAML syntax error"), msg);
}

BOOST_AUTO_TEST_CASE(duplicate_keys_are_an_error) {
  auto msg = error_of([] { load("gates:\n  dir: a\n  dir: b\n"); });
  BOOST_TEST(contains(msg, "gates.dir: duplicate key"), msg);
}

BOOST_AUTO_TEST_CASE(environment_typos_are_caught) {
  auto single = error_of([] { load("", {{"KILN_GATES_DIR", "/x"}}); });
  BOOST_TEST(contains(single, "KILN_GATES_DIR: not a kiln setting"), single);
  BOOST_TEST(contains(single, "did you mean 'KILN_GATES__DIR'"), single);
  auto kind = error_of([] { load("", {{"KILN_TOOL_STRATEGI_NODE", "rules"}}); });
  BOOST_TEST(contains(kind, "is not a node kind"), kind);
  BOOST_TEST(contains(kind, "KILN_TOOL_STRATEGY_NODE"), kind);
  auto key = error_of([] { load("", {{"KILN_GATES__DIRR", "/x"}}); });
  BOOST_TEST(contains(key, "gates.dirr: unknown key"), key);
  // Variables that are not settings are left alone.
  BOOST_CHECK_NO_THROW(load("", {{"KILN_API_KEY", "k"}, {"KILN_CONFIG", "x.yaml"}}));
}

BOOST_AUTO_TEST_CASE(env_and_set_values_are_typed) {
  auto c =
      load("", {{"KILN_PLUGINS__SEARCH_PATHS", "[/a, /b]"}}, {"tool_strategy.providers={x.y: p}"});
  BOOST_TEST(c.get_strings("plugins.search_paths") == (std::vector<std::string>{"/a", "/b"}));
  BOOST_TEST(c.section("tool_strategy").at("providers").as_object().at("x.y").as_string() == "p");
  auto msg = error_of([] { load("", {}, {"no_equals_sign"}); });
  BOOST_TEST(contains(msg, "expected key=value"), msg);
}

BOOST_AUTO_TEST_CASE(plugin_config_is_validated_against_manifests) {
  std::map<std::string, std::vector<kiln::ConfigKeyDecl>> plugins{
      {"alpha", {{"rules", "array", json::array{}, "r"}, {"depth", "integer", 2, "d"}}}};
  auto c = load("plugin_config:\n  alpha:\n    depth: 5\n");
  c.apply_plugin_schemas(plugins);
  auto cfg = c.plugin_config("alpha");
  BOOST_TEST(cfg.at("depth").as_int64() == 5);
  BOOST_TEST(cfg.at("rules").as_array().empty());  // manifest default
  BOOST_TEST(c.at("plugin_config.alpha.rules").source.describe() ==
             "plugin default (alpha manifest)");
  BOOST_TEST(c.at("plugin_config.alpha.depth").source.describe() == "deploy.yaml:3:5");

  auto unknown_plugin = error_of([&] {
    auto d = load("plugin_config:\n  alpah:\n    depth: 5\n");
    d.apply_plugin_schemas(plugins);
  });
  BOOST_TEST(contains(unknown_plugin, "no loaded plugin is named 'alpah'"), unknown_plugin);
  BOOST_TEST(contains(unknown_plugin, "did you mean 'alpha'"), unknown_plugin);

  auto unknown_key = error_of([&] {
    auto d = load("plugin_config:\n  alpha:\n    rulez: []\n");
    d.apply_plugin_schemas(plugins);
  });
  BOOST_TEST(contains(unknown_key, "deploy.yaml:3:5: plugin_config.alpha.rulez"), unknown_key);
  BOOST_TEST(contains(unknown_key, "did you mean 'rules'"), unknown_key);

  auto wrong_type = error_of([&] {
    auto d = load("", {{"KILN_PLUGIN_CONFIG__ALPHA__DEPTH", "deep"}});
    d.apply_plugin_schemas(plugins);
  });
  BOOST_TEST(
      contains(wrong_type,
               "KILN_PLUGIN_CONFIG__ALPHA__DEPTH: plugin_config.alpha.depth: expected integer"),
      wrong_type);
}

BOOST_AUTO_TEST_CASE(paths_expand_placeholders) {
  auto p = expand_path("${config_dir}/plugins", "/etc/kiln");
  BOOST_TEST(p.string() == "/etc/kiln/plugins");
  auto exe = expand_path("${exe_dir}/../plugins", "");
  BOOST_TEST(exe.is_absolute());
  BOOST_TEST(exe.string().find("${") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(settings_of_a_disabled_plugin_wait_without_an_error) {
  auto c = load("plugin_config:\n  beta:\n    x: 1\n");
  BOOST_CHECK_NO_THROW(c.apply_plugin_schemas({}, {"beta"}));
  BOOST_TEST(!c.find("plugin_config.beta.x"));
  auto d = load("plugin_config:\n  beta:\n    x: 1\n");
  BOOST_CHECK_THROW(d.apply_plugin_schemas({}, {}), ConfigError);
}

BOOST_AUTO_TEST_CASE(duplicate_plugin_settings_are_an_error) {
  auto msg = error_of([] { load("plugin_config:\n  beta:\n    x: 1\n    x: 2\n"); });
  BOOST_TEST(contains(msg, "deploy.yaml:4:5: plugin_config.beta.x: duplicate key"), msg);
}
