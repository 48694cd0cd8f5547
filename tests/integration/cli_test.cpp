// The kiln binary as an operator uses it: real processes, real plugins, real gate store.
#define BOOST_TEST_MODULE cli
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "http/client.hpp"
#include "kiln/testkit/telemetry_driver.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace kiln::test;
namespace storage = kiln::storage;
using namespace std::chrono_literals;

namespace {

const std::string kKiln = KILN_TEST_BIN;

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// A deployment in a temp dir: its own gate store and a private copy of the first-party plugins.
struct Deployment {
  TempDir dir;
  fs::path plugins = dir.path() / "plugins";
  fs::path gates = dir.path() / "gates";
  Deployment() {
    fs::create_directories(plugins);
    fs::copy_file(fs::path(KILN_PLUGIN_DIR) / "kiln_strategy_rules.so",
                  plugins / "kiln_strategy_rules.so");
  }
  std::map<std::string, std::string> env(std::map<std::string, std::string> extra = {}) const {
    extra["KILN_GATES__DIR"] = gates.string();
    extra["KILN_SERVER__PORT"] = "0";  // tests run in parallel: never a fixed port
    extra["KILN_PLUGINS__SEARCH_PATHS"] = "[" + plugins.string() + "]";
    return extra;
  }
  RunResult kiln(std::vector<std::string> args,
                 std::map<std::string, std::string> extra = {}) const {
    args.insert(args.begin(), kKiln);
    return run(args, env(std::move(extra)), dir.path());
  }
  // With all first-party plugins (tts_torch, roast, the telemetry drivers) instead of the
  // deployment's one plugin.
  RunResult kiln_all_plugins(std::vector<std::string> args) const {
    args.insert(args.end(),
                {"--set", std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "]"});
    return kiln(std::move(args));
  }
};

// Starts `kiln serve`, waits until it reports ready, stops it with SIGTERM.
RunResult serve_until_ready(const Deployment& d, std::map<std::string, std::string> extra,
                            bool* became_ready) {
  Child c({kKiln, "serve"}, d.env(std::move(extra)), d.dir.path());
  *became_ready = c.wait_for_stderr("ready:", 20s);
  if (*became_ready) c.signal(SIGTERM);
  return c.wait(20s);
}

void flip_one_byte(const fs::path& file, const std::string& marker) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string bytes = ss.str();
  auto pos = bytes.find(marker);
  BOOST_REQUIRE_MESSAGE(pos != std::string::npos, "marker not found in " << file);
  f.seekp(static_cast<std::streamoff>(pos));
  f.put(static_cast<char>(bytes[pos] ^ 0x20));  // 'r' <-> 'R'
}

}  // namespace

BOOST_AUTO_TEST_CASE(ungated_node_is_refused_then_gated_then_refused_after_a_byte_changes) {
  Deployment d;
  const std::map<std::string, std::string> rules{{"KILN_TOOL_STRATEGY_NODE", "rules"}};

  // 1. No gate: serve refuses quickly, naming the command that gates the node.
  auto refused = d.kiln({"serve"}, rules);
  BOOST_TEST(refused.exit_code == 4);
  BOOST_TEST(refused.seconds < 10.0);
  BOOST_TEST(contains(refused.err, "kiln gate run tool_strategy/rules"), refused.err);
  BOOST_TEST(contains(refused.err, "environment KILN_TOOL_STRATEGY_NODE"), refused.err);
  BOOST_TEST(contains(refused.err, "no gate record in " + d.gates.string()), refused.err);
  BOOST_TEST(contains(refused.err, "with this same configuration"), refused.err);

  // 2. The gate passes and is recorded with the plugin's hash.
  auto gate = d.kiln({"gate", "run", "tool_strategy/rules"}, rules);
  BOOST_TEST(gate.exit_code == 0, gate.out << gate.err);
  BOOST_TEST(contains(gate.out, "gate tool_strategy/rules: PASS"), gate.out);
  BOOST_TEST(fs::exists(d.gates / "tool_strategy.rules.json"));

  // 3. Now serve starts (and stops cleanly on SIGTERM).
  bool ready = false;
  auto served = serve_until_ready(d, rules, &ready);
  BOOST_TEST(ready, served.err);
  BOOST_TEST(served.exit_code == 0, served.err);
  BOOST_TEST(contains(served.err, "node tool_strategy/rules selected by environment"), served.err);

  // 4. One byte of the plugin file changes: the gate is stale, serve refuses again.
  flip_one_byte(d.plugins / "kiln_strategy_rules.so", "rule-based routing");
  auto stale = d.kiln({"serve"}, rules);
  BOOST_TEST(stale.exit_code == 4);
  BOOST_TEST(contains(stale.err, "plugin file changed"), stale.err);
  BOOST_TEST(contains(stale.err, "kiln gate run tool_strategy/rules"), stale.err);

  auto status = d.kiln({"gate", "status", "--json"});
  BOOST_REQUIRE(status.exit_code == 0);
  auto nodes = json::parse(status.out).at("nodes").as_array();
  bool saw_stale = false;
  for (const auto& n : nodes)
    if (n.at("node").as_string() == "rules") saw_stale = n.at("gate").as_string() == "stale";
  BOOST_TEST(saw_stale, status.out);
}

BOOST_AUTO_TEST_CASE(warn_mode_runs_an_ungated_node_loudly) {
  Deployment d;
  bool ready = false;
  auto r = serve_until_ready(
      d, {{"KILN_TOOL_STRATEGY_NODE", "rules"}, {"KILN_GATES__ENFORCE", "warn"}}, &ready);
  BOOST_TEST(ready, r.err);
  BOOST_TEST(contains(r.err, "GATE NOT ENFORCED"), r.err);
  BOOST_TEST(contains(r.err, "WITH WARNINGS"), r.err);
}

BOOST_AUTO_TEST_CASE(default_serve_starts_on_the_embedded_config) {
  Deployment d;
  bool ready = false;
  auto r = serve_until_ready(d, {}, &ready);
  BOOST_TEST(ready, r.err);
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(contains(r.err, "plugin strategy_rules 0.1.0 loaded"), r.err);
}

BOOST_AUTO_TEST_CASE(unknown_node_lists_the_available_ones) {
  Deployment d;
  auto r = d.kiln({"serve"}, {{"KILN_TOOL_STRATEGY_NODE", "rulez"}});
  BOOST_TEST(r.exit_code == 3);
  BOOST_TEST(contains(r.err, "unknown node 'rulez'"), r.err);
  BOOST_TEST(contains(r.err, "available: static, rules"), r.err);
  BOOST_TEST(contains(r.err, "did you mean 'rules'"), r.err);
  // A gate run for a node of a plugin kiln did not load says where it looked.
  auto gate = d.kiln({"gate", "run", "tool_strategy/mine"});
  BOOST_TEST(gate.exit_code == 2);
  BOOST_TEST(contains(gate.err, "unknown node tool_strategy/mine (available: static, rules)"),
             gate.err);
  BOOST_TEST(contains(gate.err, "no loaded plugin provides it (plugins searched in " +
                                    d.plugins.string() + ")"),
             gate.err);
  BOOST_TEST(contains(gate.err, "needs its directory in plugins.search_paths"), gate.err);
}

BOOST_AUTO_TEST_CASE(config_explain_names_the_environment_variable) {
  Deployment d;
  auto r =
      d.kiln({"config", "explain", "nodes.tool_strategy"}, {{"KILN_TOOL_STRATEGY_NODE", "rules"}});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(contains(r.out, "nodes.tool_strategy = \"rules\""), r.out);
  BOOST_TEST(contains(r.out, "environment KILN_TOOL_STRATEGY_NODE"), r.out);
  // Numbers as a person writes them (604800.0, not 6.048E5).
  auto age = d.kiln({"config", "explain", "telemetry.max_age_s"});
  BOOST_TEST(contains(age.out, "telemetry.max_age_s = 604800.0    # built-in default"), age.out);
  auto all = d.kiln({"config", "explain", "--json"});
  BOOST_REQUIRE(all.exit_code == 0);
  bool found = false;
  const json::value parsed = json::parse(all.out);
  for (const auto& e : parsed.as_array())
    if (e.at("key").as_string() == "plugin_config.strategy_rules.rules") found = true;
  BOOST_TEST(found, all.out);
  auto missing = d.kiln({"config", "explain", "gates.dri"});
  BOOST_TEST(missing.exit_code == 3);
  BOOST_TEST(contains(missing.err, "did you mean 'gates.dir'"), missing.err);
  // A path with ${config_dir} or ${exe_dir}: where kiln reads it here, too.
  fs::create_directories(d.dir.path() / "etc");
  std::ofstream(d.dir.path() / "etc" / "kiln.yaml")
      << "storage:\n  artifacts: ${config_dir}/kept\n";
  auto path = d.kiln({"config", "explain", "storage.artifacts", "--config",
                      (d.dir.path() / "etc" / "kiln.yaml").string()});
  BOOST_TEST(path.exit_code == 0, path.err);
  BOOST_TEST(contains(path.out, "storage.artifacts = \"${config_dir}/kept\"    # "), path.out);
  BOOST_TEST(contains(path.out, "; here \"" + (d.dir.path() / "etc" / "kept").string() + "\""),
             path.out);
  auto listed = d.kiln({"config", "explain", "storage.artifacts", "--json", "--config",
                        (d.dir.path() / "etc" / "kiln.yaml").string()});
  const auto row = json::parse(listed.out).as_array().at(0);
  BOOST_TEST(row.at("resolved").as_string() == (d.dir.path() / "etc" / "kept").string(),
             listed.out);
  BOOST_TEST(!json::parse(d.kiln({"config", "explain", "storage.path", "--json"}).out)
                  .as_array()
                  .at(0)
                  .as_object()
                  .contains("resolved"));  // nothing to expand
}

BOOST_AUTO_TEST_CASE(config_check_reports_problems_with_locations) {
  Deployment d;
  auto good = d.kiln({"config", "check"});
  BOOST_TEST(good.exit_code == 0, good.err);
  BOOST_TEST(contains(good.out, "configuration is valid"));
  BOOST_TEST(!contains(good.out, "plain HTTP"), good.out);  // the default stays on loopback
  // Bound beyond loopback, plain HTTP is said (not refused).
  auto open_host = d.kiln({"config", "check", "--set", "server.host=0.0.0.0"});
  BOOST_TEST(open_host.exit_code == 0, open_host.err);
  BOOST_TEST(contains(open_host.out,
                      "warning: server.host 0.0.0.0 is reachable from other "
                      "machines and kiln speaks plain HTTP"),
             open_host.out);

  // A file config check refuses (exit 3), saying `says`.
  auto file = d.dir.path() / "bad.yaml";
  auto refused = [&](const std::string& yaml, const std::string& says) {
    std::ofstream(file) << yaml;
    auto r = d.kiln({"config", "check", "--config", file.string()});
    BOOST_TEST(r.exit_code == 3, yaml);
    BOOST_TEST(contains(r.err, says), r.err);
    return r;
  };
  refused("gates:\n  enforce: maybe\nplugin_config:\n  strategy_rules:\n    rulez: []\n",
          "bad.yaml:2:12: gates.enforce: 'maybe' is not one of strict, warn");
  // Aliases of aliases expand to more values than any configuration holds: refused before
  // they are expanded (this one would be 10^9), as is a second document.
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 9; ++level) {
    bomb += "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ", *a" : "*a") + std::to_string(level - 1);
    bomb += "]\n";
  }
  refused(bomb, "bad.yaml: the configuration expands to more than 100000 values");
  refused("log:\n  level: info\n---\nlog:\n  level: debug\n",
          "bad.yaml:4:1: a second YAML document");
  auto plugin_key = refused("plugin_config:\n  strategy_rules:\n    rulez: []\n",
                            "bad.yaml:3:5: plugin_config.strategy_rules.rulez");
  BOOST_TEST(contains(plugin_key.err, "did you mean 'rules'"), plugin_key.err);

  // Plugins searched where there are none: said as a warning; a node the deployment selects by
  // name that no plugin then provides is an error, for config check and serve alike (serve
  // started and reported ready, storing telemetry with no sessions).
  auto nowhere = d.kiln({"config", "check", "--set", "plugins.search_paths=[\"/nonexistent\"]"});
  BOOST_TEST(nowhere.exit_code == 0, nowhere.err);
  BOOST_TEST(contains(nowhere.out,
                      "warning: no directory of plugins.search_paths exists "
                      "(/nonexistent)"),
             nowhere.out);
  for (const std::string cmd : {"config", "serve"}) {
    std::vector<std::string> args = {cmd};
    if (cmd == "config") args.push_back("check");
    args.insert(args.end(), {"--set", "plugins.search_paths=[\"/nonexistent\"]", "--set",
                             "nodes.event_detector=artisan", "--set", "server.port=0"});
    auto unprovided = d.kiln(args);
    BOOST_TEST(unprovided.exit_code == 3, cmd << ": " << unprovided.out << unprovided.err);
    BOOST_TEST(contains(unprovided.err,
                        "nodes.event_detector: node 'artisan' is selected by command line "
                        "--set nodes.event_detector=artisan but no loaded plugin provides it"),
               cmd << ": " << unprovided.err);
  }

  auto missing = d.kiln({"config", "check", "--config", (d.dir.path() / "nope.yaml").string()});
  BOOST_TEST(missing.exit_code == 3);
  BOOST_TEST(contains(missing.err, "nope.yaml (--config): cannot be read"), missing.err);
  // A command that only reads refuses a database that is not there, instead of making an empty
  // one where a wrong config points (which then said "no missions").
  const auto elsewhere = d.dir.path() / "elsewhere" / "k.db";
  for (std::vector<std::string> cmd :
       {std::vector<std::string>{"sessions", "list"}, {"mission", "list"}, {"devices", "list"}}) {
    cmd.insert(cmd.end(), {"--set", "storage.path=" + elsewhere.string()});
    auto read = d.kiln(cmd);
    BOOST_TEST(read.exit_code == 1, cmd[0]);
    BOOST_TEST(contains(read.err, "no database at " + elsewhere.string() +
                                      " yet (storage.path, command line --set"),
               read.err);
  }
  BOOST_TEST(!fs::exists(elsewhere.parent_path()));
  // One that writes makes it (a new deployment's first command must), and says where: a key
  // made away from the server's database is not one the server knows.
  auto made = d.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer", "--set",
                      "storage.path=" + elsewhere.string()});
  BOOST_TEST(made.exit_code == 0, made.err);
  BOOST_TEST(contains(made.err, "no database at " + elsewhere.string() +
                                    " (storage.path, command line --set"),
             made.err);
  BOOST_TEST(contains(made.err,
                      "creating a new one. If a kiln serve runs elsewhere, this is not "
                      "its database"),
             made.err);
  // It holds the ledger and the keys: not readable by other users, whatever the umask (0022).
  // (Its -wal and -shm, removed at a clean close, take its mode from SQLite.)
  {
    const auto& file = elsewhere;
    const auto perms = fs::status(file).permissions();
    const bool private_to_group =
        (perms & (fs::perms::others_all | fs::perms::group_write)) == fs::perms::none;
    const bool owner_reads = (perms & fs::perms::owner_read) != fs::perms::none;
    BOOST_TEST(private_to_group, file.string());
    BOOST_TEST(owner_reads, file.string());
  }
  // A tenant ends session ids, metric labels and log lines: a space or line break in it is
  // refused, for API keys and devices alike.
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"keys", "create", "--tenant", "we ird", "--role", "viewer"},
        {"devices", "add", "sim-1", "--tenant", "a\nb"}}) {
    auto bad_tenant = d.kiln(cmd);
    BOOST_TEST(bad_tenant.exit_code == 2, bad_tenant.err);
    BOOST_TEST(contains(bad_tenant.err, "' is not valid: use 1-64 of A-Z a-z 0-9 . _ -"),
               bad_tenant.err);
  }
  auto again = d.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer", "--set",
                       "storage.path=" + elsewhere.string()});
  BOOST_TEST(!contains(again.err, "creating a new one"), again.err);
  // A device's new secret key goes beside that database, not into the working directory.
  auto device = d.kiln_all_plugins(
      {"devices", "add", "sim-k", "--set", "storage.path=" + elsewhere.string()});
  BOOST_REQUIRE_MESSAGE(device.exit_code == 0, device.err);
  const auto keys = elsewhere.parent_path() / "devices" / "default";
  BOOST_TEST(contains(device.out, "secret key written to " + keys.string() + "/sim-k."),
             device.out);
  BOOST_TEST(fs::is_directory(keys));
  BOOST_TEST(!fs::exists(d.dir.path() / "var" / "devices"));
  fs::remove_all(elsewhere.parent_path());
  auto from_env = d.kiln({"config", "check"}, {{"KILN_CONFIG", "/nonexistent/kiln.yaml"}});
  BOOST_TEST(from_env.exit_code == 3);
  BOOST_TEST(contains(from_env.err, "kiln.yaml (KILN_CONFIG): cannot be read"), from_env.err);
  // A directory is no config (it read as an empty one).
  auto dir = d.kiln({"config", "check", "--config", d.dir.path().string()});
  BOOST_TEST(dir.exit_code == 3);
  BOOST_TEST(contains(dir.err, "is a directory; name a YAML file in it"), dir.err);

  // What `kiln serve` would refuse at start is found by the check.
  BOOST_TEST(d.kiln_all_plugins({"config", "check"}).exit_code == 0);
  auto serve_would_refuse =
      d.kiln_all_plugins({"config", "check", "--set", "sessions.mission=roast_reprot", "--set",
                          "server.host=localhost", "--set", "recorder.enabled=true"});
  BOOST_TEST(serve_would_refuse.exit_code == 3);
  BOOST_TEST(contains(serve_would_refuse.err, "server.host: 'localhost' is not an IP address"),
             serve_would_refuse.err);
  BOOST_TEST(contains(serve_would_refuse.err, "did you mean 'roast_report'?"),
             serve_would_refuse.err);
  BOOST_TEST(contains(serve_would_refuse.err, "recorder.enabled needs recorder.key_file"),
             serve_would_refuse.err);
  // A value only the node's own factory knows to refuse, found by the check (it passed, and
  // `kiln record --driver bullet_r1` refused it later), with where it was set.
  auto node_refuses = d.kiln_all_plugins(
      {"config", "check", "--set", "plugin_config.telemetry_bullet_r1.transport=serial"});
  BOOST_TEST(node_refuses.exit_code == 3);
  BOOST_TEST(contains(node_refuses.err,
                      "plugin_config.telemetry_bullet_r1.transport is 'serial'; use usb, replay "
                      "or sim (node telemetry_driver/bullet_r1, provider telemetry_bullet_r1) "
                      "(set by command line --set"),
             node_refuses.err);
  auto kind_setting =
      d.kiln_all_plugins({"config", "check", "--set", "plugin_config.telemetry_sim.dtr=0.7"});
  BOOST_TEST(kind_setting.exit_code == 3);
  BOOST_TEST(contains(kind_setting.err, "plugin_config.telemetry_sim.dtr must be in (0, 0.5)"),
             kind_setting.err);
  // A one-shot command logs warnings and errors only (its output is what it prints), unless the
  // level is asked for this run; the config file's level (info) is the service's.
  auto quiet = d.kiln_all_plugins({"config", "check", "--set", "plugins.disabled=[tts_espeak]"});
  BOOST_TEST(quiet.exit_code == 0, quiet.err);
  BOOST_TEST(!contains(quiet.err, "plugin tts_espeak skipped"), quiet.err);
  for (const auto& [args, env] :
       std::vector<std::pair<std::vector<std::string>, std::map<std::string, std::string>>>{
           {{"--log-level", "info"}, {}}, {{}, {{"KILN_LOG__LEVEL", "info"}}}}) {
    std::vector<std::string> cmd{
        "config", "check",
        "--set",  "plugins.disabled=[tts_espeak]",
        "--set",  std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "]"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    auto told = d.kiln(cmd, env);
    BOOST_TEST(contains(told.err, "plugin tts_espeak skipped: listed in plugins.disabled"),
               told.err);
  }
  auto bad_env = d.kiln({"config", "check"}, {{"KILN_GATES_DIR", "/x"}});
  BOOST_TEST(bad_env.exit_code == 3);
  BOOST_TEST(contains(bad_env.err, "did you mean 'KILN_GATES__DIR'"), bad_env.err);
}

BOOST_AUTO_TEST_CASE(invalid_rules_stop_startup_with_the_rule_path) {
  Deployment d;
  auto r = d.kiln({"serve", "--set", "plugin_config.strategy_rules.rules=[{name: a}]", "--set",
                   "gates.enforce=warn"},
                  {{"KILN_TOOL_STRATEGY_NODE", "rules"}});
  BOOST_TEST(r.exit_code == 3);  // a configuration error, not a broken plugin
  BOOST_TEST(contains(r.err, "plugin_config.strategy_rules.rules[0].providers"), r.err);
}

BOOST_AUTO_TEST_CASE(plugins_list_and_nodes_show_what_is_loaded) {
  Deployment d;
  auto plugins = d.kiln({"plugins", "list", "--json"});
  BOOST_REQUIRE(plugins.exit_code == 0);
  auto arr = json::parse(plugins.out).as_array();
  BOOST_REQUIRE(arr.size() == 1u);
  BOOST_TEST(arr[0].at("name").as_string() == "strategy_rules");
  BOOST_TEST(arr[0].at("version").as_string() == "0.1.0");
  BOOST_TEST(arr[0].at("nodes").as_array().at(0).as_string() == "tool_strategy/rules");

  auto text = d.kiln({"plugins", "list"});
  BOOST_TEST(contains(text.out, "strategy_rules 0.1.0 (Apache-2.0)"), text.out);

  auto nodes = d.kiln({"nodes", "--set", "nodes.tool_strategy=rules"});
  BOOST_TEST(nodes.exit_code == 0);
  BOOST_TEST(contains(nodes.out, "tool_strategy"), nodes.out);
  BOOST_TEST(contains(nodes.out, "command line --set nodes.tool_strategy=rules"), nodes.out);
  BOOST_TEST(contains(nodes.out, "not gated"), nodes.out);
  // The nodes to choose from, as its --help promises (only --json gave them).
  BOOST_TEST(contains(nodes.out, " AVAILABLE "), nodes.out);
  BOOST_TEST(contains(nodes.out, " static,rules "), nodes.out);
  auto unknown = d.kiln({"nodes", "--set", "nodes.tool_strategy=rule"});
  BOOST_TEST(contains(unknown.out, "UNKNOWN"), unknown.out);
  BOOST_TEST(contains(unknown.out, "tool_strategy: no such node; available: "), unknown.out);
  BOOST_TEST(contains(unknown.out, "did you mean 'rules'?"), unknown.out);
}

BOOST_AUTO_TEST_CASE(tool_invoke_prints_output_or_a_typed_error) {
  Deployment d;
  auto ok = d.kiln({"tool", "invoke", "kiln.echo", "--input", R"({"hello": "world"})"});
  BOOST_TEST(ok.exit_code == 0, ok.err);
  BOOST_TEST(json::parse(ok.out).at("hello").as_string() == "world");
  auto unknown = d.kiln({"tool", "invoke", "nope.tool"});
  BOOST_TEST(unknown.exit_code == 1);
  BOOST_TEST(contains(unknown.err, "error unknown_tool:"), unknown.err);
  auto bad_json = d.kiln({"tool", "invoke", "kiln.echo", "--input", "{oops"});
  BOOST_TEST(bad_json.exit_code == 2);
  BOOST_TEST(contains(bad_json.err, "--input is not valid JSON"), bad_json.err);
  auto bad_input = d.kiln({"tool", "invoke", "kiln.sleep", "--input", R"({"ms": "long"})"});
  BOOST_TEST(bad_input.exit_code == 2);  // refused input, as for missions
  BOOST_TEST(contains(bad_input.err, "error invalid_input: tool 'kiln.sleep': input.ms"),
             bad_input.err);
  auto list = d.kiln({"tool", "list"});
  BOOST_TEST(contains(list.out, "kiln.noop"), list.out);
}

BOOST_AUTO_TEST_CASE(help_and_usage_errors) {
  Deployment d;
  auto help = d.kiln({"--help"});
  BOOST_TEST(help.exit_code == 0);
  BOOST_TEST(contains(help.out, "Exit codes"));
  for (std::vector<std::string> cmd : {std::vector<std::string>{"serve"},
                                       {"plugins", "list"},
                                       {"nodes"},
                                       {"gate", "run"},
                                       {"gate", "status"},
                                       {"config", "check"},
                                       {"config", "explain"},
                                       {"tool", "list"},
                                       {"tool", "invoke"},
                                       {"version"}}) {
    cmd.push_back("--help");
    auto r = d.kiln(cmd);
    BOOST_TEST(r.exit_code == 0, cmd[0]);
    BOOST_TEST(contains(r.out, "Usage: kiln " + cmd[0]), r.out);
  }
  // A group's name alone lists its commands: on stdout with --help, as a usage error without.
  for (const auto& [group, sub] :
       std::vector<std::pair<std::string, std::string>>{{"devices", "kiln devices rotate"},
                                                        {"sessions", "kiln sessions show SESSION"},
                                                        {"profiles", "kiln profiles import"},
                                                        {"mission", "kiln mission approve"},
                                                        {"ledger", "kiln ledger verify"},
                                                        {"keys", "kiln keys create"}}) {
    auto listed = d.kiln({group, "--help"});
    BOOST_TEST(listed.exit_code == 0, group);
    BOOST_TEST(contains(listed.out, "Usage: kiln " + group + " COMMAND"), listed.out);
    BOOST_TEST(contains(listed.out, sub), listed.out);
    auto bare = d.kiln({group});
    BOOST_TEST(bare.exit_code == 2, group);
    BOOST_TEST(contains(bare.err, sub), bare.err);
  }
  // `kiln help ...` answers as `... --help` does.
  auto help_gate = d.kiln({"help", "gate", "run"});
  BOOST_TEST(help_gate.exit_code == 0, help_gate.err);
  BOOST_TEST(help_gate.out == d.kiln({"gate", "run", "--help"}).out);
  BOOST_TEST(contains(d.kiln({"help", "gate"}).out, "Usage: kiln gate COMMAND"));
  BOOST_TEST(d.kiln({"help"}).out == help.out);
  auto typo = d.kiln({"serv"});
  BOOST_TEST(typo.exit_code == 2);
  BOOST_TEST(contains(typo.err, "did you mean 'serve'"), typo.err);
  auto none = d.kiln({});
  BOOST_TEST(none.exit_code == 2);
  auto opt = d.kiln({"nodes", "--frobnicate"});
  BOOST_TEST(opt.exit_code == 2);
  BOOST_TEST(contains(opt.err, "unknown option '--frobnicate'"), opt.err);
  auto gate_arg = d.kiln({"gate", "run", "rules"});
  BOOST_TEST(gate_arg.exit_code == 2);
  auto gate_unknown = d.kiln({"gate", "run", "tool_strategy/rulez"});
  BOOST_TEST(gate_unknown.exit_code == 2);
  BOOST_TEST(contains(gate_unknown.err, "did you mean 'rules'"), gate_unknown.err);
}

// A database this user may read but not write is refused at start (exit 6, which systemd does not
// restart), not served until the first write fails; reading commands still read it.
BOOST_AUTO_TEST_CASE(a_database_that_cannot_be_written_is_refused_at_start) {
  Deployment d;
  BOOST_REQUIRE_EQUAL(d.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer"}).exit_code,
                      0);
  const auto db = d.dir.path() / "var" / "kiln.db";
  BOOST_REQUIRE(fs::exists(db));
  // Unwritable: by its mode for a user, by the immutable attribute for root (who ignores modes).
  fs::permissions(db, fs::perms::owner_read | fs::perms::group_read);
  struct Immutable {
    int fd = -1;
    explicit Immutable(const fs::path& f) : fd(::open(f.c_str(), O_RDONLY)) {
      int flags = 0;
      if (fd >= 0 && ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags |= FS_IMMUTABLE_FL;
        ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
      }
    }
    ~Immutable() {
      int flags = 0;
      if (fd >= 0 && ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags &= ~FS_IMMUTABLE_FL;
        ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
      }
      if (fd >= 0) ::close(fd);
    }
  } immutable(db);
  const int probe = ::open(db.c_str(), O_WRONLY);
  if (probe >= 0) {
    ::close(probe);
    BOOST_TEST_MESSAGE("skipped: this user can write " << db
                                                       << " whatever its mode (root on a "
                                                          "filesystem without the immutable "
                                                          "attribute)");
    return;
  }
  bool became_ready = true;
  auto served = serve_until_ready(d, {}, &became_ready);
  BOOST_TEST(!became_ready);
  BOOST_TEST(served.exit_code == 6, served.err);
  BOOST_TEST(contains(served.err, "can be read but not written by this user"), served.err);
  auto worker = d.kiln({"mission", "work", "--until-idle"});
  BOOST_TEST(worker.exit_code == 6, worker.err);
  BOOST_TEST(contains(worker.err, "can be read but not written by this user"), worker.err);
  auto read = d.kiln({"ledger", "verify"});
  BOOST_TEST(read.exit_code == 0, read.out << read.err);
  BOOST_TEST(d.kiln({"keys", "list"}).exit_code == 0);
}

// A template its tools refuse (as after a plugin upgrade that changed a tool's input) stops the
// server and the mission commands, not the backup and checks a recovery needs.
BOOST_AUTO_TEST_CASE(a_refused_template_does_not_stop_the_database_commands) {
  Deployment d;
  BOOST_REQUIRE_EQUAL(d.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer"}).exit_code,
                      0);
  fs::create_directories(d.dir.path() / "missions");
  std::ofstream(d.dir.path() / "missions" / "nap.yaml")
      << "name: nap\nsteps:\n  - {id: a, tool: kiln.sleep, input: {ms: soon}}\n";
  const std::map<std::string, std::string> broken{{"KILN_MISSIONS__DIRS", "[missions]"},
                                                  {"KILN_SESSIONS__MISSION", ""}};
  auto check = d.kiln({"config", "check"}, broken);
  BOOST_TEST(check.exit_code == 3, check.out << check.err);
  BOOST_TEST(contains(check.out + check.err, "nap.yaml:3:5: step 'a': input.ms: expected integer"),
             check.out << check.err);
  BOOST_TEST(d.kiln({"mission", "list"}, broken).exit_code == 3);
  for (std::vector<std::string> cmd : {std::vector<std::string>{"db", "status"},
                                       {"ledger", "verify"},
                                       {"ledger", "export"},
                                       {"db", "backup", (d.dir.path() / "copy.db").string()}}) {
    auto r = d.kiln(cmd, broken);
    BOOST_TEST(r.exit_code == 0, cmd[0] << " " << cmd[1] << ": " << r.err);
    BOOST_TEST(contains(r.err, "kiln serve will not start until that is mended"), r.err);
  }
  BOOST_TEST(fs::exists(d.dir.path() / "copy.db"));
}

// A command takes the options its usage lines name (and those of every command); any other is
// refused before the command runs, never ignored.
BOOST_AUTO_TEST_CASE(options_a_command_does_not_take_are_refused) {
  Deployment d;
  // Every command, from the groups' listings and the main help.
  std::vector<std::string> commands = {"serve",  "nodes",  "say",     "analyze",
                                       "record", "report", "predict", "version"};
  for (const std::string group : {"plugins", "gate", "config", "tool", "db", "ledger", "mission",
                                  "policy", "keys", "server", "devices", "sessions", "profiles"}) {
    std::istringstream lines(d.kiln({group, "--help"}).out);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("  kiln " + group + " ", 0) == 0) {
        std::istringstream words(line.substr(7));
        std::string g, sub;
        words >> g >> sub;
        commands.push_back(g + " " + sub);
      }
  }
  BOOST_TEST(commands.size() >= 50u);
  // Each option a usage line names is one kiln knows (a typo there would refuse it).
  const std::regex option("(?:^|[\\s\\[|])(-o\\b|--[a-z][a-z-]*)");
  int checked = 0;
  for (const auto& command : commands) {
    std::vector<std::string> argv;
    std::istringstream words(command);
    for (std::string w; words >> w;) argv.push_back(w);
    auto help = d.kiln([&] {
      auto v = argv;
      v.push_back("--help");
      return v;
    }());
    BOOST_TEST(help.exit_code == 0, command);
    const std::string usage = help.out.substr(0, help.out.find("\n\n"));
    BOOST_TEST(contains(usage, "Usage: kiln " + command), command + ": " + usage);
    for (std::sregex_iterator it(usage.begin(), usage.end(), option), end; it != end; ++it) {
      auto v = argv;
      v.insert(v.end(), {"--help", (*it)[1].str(), "x"});
      auto r = d.kiln(v);
      BOOST_TEST(r.exit_code == 0, command << " " << (*it)[1].str() << ": " << r.err);
      ++checked;
    }
  }
  BOOST_TEST(checked >= 100);

  // Taken elsewhere, refused here; nothing done, nothing written.
  auto to_file = d.kiln({"sessions", "list", "--out", (d.dir.path() / "list.txt").string()});
  BOOST_TEST(to_file.exit_code == 2);
  BOOST_TEST(contains(to_file.err,
                      "--out is not an option of kiln sessions list (see kiln "
                      "sessions list --help)"),
             to_file.err);
  BOOST_TEST(!fs::exists(d.dir.path() / "list.txt"));
  auto actor = d.kiln({"say", "Drop.", "--as", "roaster"});
  BOOST_TEST(actor.exit_code == 2);
  BOOST_TEST(contains(actor.err, "--as is not an option of kiln say"), actor.err);
  auto phases = d.kiln({"report", "s-1", "--phases", "1,2,3,4"});
  BOOST_TEST(phases.exit_code == 2);
  BOOST_TEST(contains(phases.err, "kiln analyze and kiln profiles import take it"), phases.err);
  // Those of every command, and those a usage line names, go through to the command (analyze's
  // tenant routes its tool call; -o takes -o=FILE as --out=FILE).
  auto analyzed = d.kiln({"analyze", "missing.alog", "--tenant", "t1"});
  BOOST_TEST(analyzed.exit_code != 0);
  BOOST_TEST(contains(analyzed.err, "missing.alog: no such file"), analyzed.err);
  auto short_eq = d.kiln({"mission", "artifact", "m-none", "speak", "speech.wav", "-o=x.wav"});
  BOOST_TEST(!contains(short_eq.err, "unknown option"), short_eq.err);
  BOOST_TEST(contains(short_eq.err, "no database at var/kiln.db yet"), short_eq.err);
  auto taken = d.kiln(
      {"mission", "approve", "m-none", "--tenant", "t1", "--reason", "ok", "--log-level", "warn"});
  BOOST_TEST(taken.exit_code == 1, taken.err);
  BOOST_TEST(contains(taken.err, "m-none"), taken.err);
  // With a server, the API key says who acts and for which tenant.
  for (const std::string local : {"--tenant", "--as", "--role"}) {
    auto r = d.kiln({"mission", "cancel", "m-1", local, "x", "--server", "http://127.0.0.1:9"});
    BOOST_TEST(r.exit_code == 2, local);
    BOOST_TEST(contains(r.err, local + " is not taken with --server"), r.err);
  }
  auto since =
      d.kiln({"ledger", "export", "--since", "2026-12-01", "--server", "http://127.0.0.1:9"});
  BOOST_TEST(since.exit_code == 2);
  BOOST_TEST(contains(since.err, "with --server it takes a seq number"), since.err);
}

BOOST_AUTO_TEST_CASE(json_log_lines_are_json) {
  Deployment d;
  bool ready = false;
  auto r = serve_until_ready(d, {{"KILN_LOG__FORMAT", "json"}}, &ready);
  BOOST_TEST(ready);
  std::istringstream lines(r.err);
  int parsed = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    BOOST_TEST_REQUIRE(!ec, "a log line that is not JSON: " << line);
    BOOST_TEST(v.as_object().contains("ts"));
    BOOST_TEST(v.as_object().contains("level"));
    BOOST_TEST(v.as_object().contains("msg"));
    ++parsed;
  }
  BOOST_TEST(parsed >= 3);
  auto quiet = d.kiln({"tool", "invoke", "kiln.noop", "--log-level", "off"});
  BOOST_TEST(quiet.err.empty(), quiet.err);
}

BOOST_AUTO_TEST_CASE(gate_decisions_land_in_a_verifiable_ledger) {
  Deployment d;
  auto none = d.kiln({"db", "status"});
  BOOST_TEST(none.exit_code == 1);
  BOOST_TEST(contains(none.err, "no database at var/kiln.db yet (storage.path, "), none.err);
  BOOST_TEST(contains(none.err, "--config FILE or KILN_CONFIG"), none.err);
  auto no_export = d.kiln({"ledger", "export"});
  BOOST_TEST(no_export.exit_code == 1);
  BOOST_TEST(contains(no_export.err, "nothing to export"), no_export.err);
  auto no_verify = d.kiln({"ledger", "verify", "--set", "storage.path=elsewhere/k.db"});
  BOOST_TEST(no_verify.exit_code == 1);
  BOOST_TEST(contains(no_verify.err, "(storage.path, command line --set"), no_verify.err);
  BOOST_TEST(!fs::exists(d.dir.path() / "var/kiln.db"));  // inspecting created nothing

  BOOST_REQUIRE(d.kiln({"gate", "run", "tool_strategy/rules"}).exit_code == 0);
  BOOST_REQUIRE(d.kiln({"gate", "run", "tool_strategy/rules"}).exit_code == 0);

  auto status = d.kiln({"db", "status", "--json"});
  BOOST_TEST(status.exit_code == 0, status.err);
  auto s = json::parse(status.out);
  BOOST_TEST(s.at("schema_version").as_int64() == storage::kernel_migrations().back().version);
  BOOST_TEST(s.at("journal_mode").as_string() == "wal");
  BOOST_TEST(s.at("ledger_events").as_int64() == 2);
  BOOST_TEST(s.at("wal_bytes").is_int64());  // beside the file's size: writes not checkpointed

  auto verify = d.kiln({"ledger", "verify"});
  BOOST_TEST(verify.exit_code == 0, verify.out << verify.err);
  BOOST_TEST(contains(verify.out, "ledger intact: 2 events"), verify.out);

  // --since is a seq or a time whose fields are checked (a seq past int64, month 13: exit 2).
  for (const char* since : {"9223372036854775808", "2026-13-45T99:99:99Z", "yesterday"}) {
    auto refused = d.kiln({"ledger", "export", "--since", since});
    BOOST_TEST(refused.exit_code == 2, since << ": " << refused.err);
    BOOST_TEST(contains(refused.err, "--since takes a seq number or an ISO 8601 UTC time"),
               refused.err);
  }
  for (const char* since : {"0", "2026-01-01", "2026-01-01T00:00", "2026-01-01T00:00:00.000Z"}) {
    auto taken = d.kiln({"ledger", "export", "--since", since, "--stream", "gates"});
    BOOST_TEST(taken.exit_code == 0, since << ": " << taken.err);
    BOOST_TEST(contains(taken.out, "gate.recorded"), since << ": " << taken.out);
  }

  auto out_file = d.dir.path() / "gates.jsonl";
  auto exported = d.kiln({"ledger", "export", "--stream", "gates", "--out", out_file.string()});
  BOOST_TEST(exported.exit_code == 0, exported.err);
  std::ifstream in(out_file);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    auto e = json::parse(line);
    BOOST_TEST(e.at("kind").as_string() == "gate.recorded");
    BOOST_TEST(e.at("payload").at("result").as_string() == "PASS");
    BOOST_TEST(e.at("payload").at("node").as_string() == "rules");
  }
  BOOST_TEST(lines == 2);
  // It holds what the database holds: private to the group as the database, whatever the umask,
  // and never written through a link.
  BOOST_TEST(static_cast<int>(fs::status(out_file).permissions() & fs::perms::all) == 0640);
  fs::create_symlink(d.dir.path() / "elsewhere.txt", d.dir.path() / "link.jsonl");
  auto through = d.kiln({"ledger", "export", "--out", (d.dir.path() / "link.jsonl").string()});
  BOOST_TEST(through.exit_code == 1);
  BOOST_TEST(contains(through.err, "is a symbolic link"), through.err);
  BOOST_TEST(!fs::exists(d.dir.path() / "elsewhere.txt"));

  auto backup = d.dir.path() / "backup";
  auto b1 = d.kiln({"ledger", "backfill", "--out", backup.string()});
  BOOST_TEST(b1.exit_code == 0, b1.err);
  BOOST_TEST(contains(b1.out, "system/gates: exported (2 events, no marker)"), b1.out);
  BOOST_TEST(contains(b1.out, "backfill: 1 exported, 0 up to date"), b1.out);
  BOOST_TEST(fs::exists(backup / "system" / "gates.marker.json"));
  BOOST_TEST(static_cast<int>(fs::status(backup / "system" / "gates.jsonl").permissions() &
                              fs::perms::all) == 0640);
  auto b2 = d.kiln({"ledger", "backfill", "--out", backup.string()});
  BOOST_TEST(contains(b2.out, "backfill: 0 exported, 1 up to date"), b2.out);
  auto b3 = d.kiln({"ledger", "backfill", "--out", backup.string(), "--force"});
  BOOST_TEST(contains(b3.out, "backfill: 1 exported, 0 up to date"), b3.out);
  auto no_out = d.kiln({"ledger", "backfill"});
  BOOST_TEST(no_out.exit_code == 2);

  // Rewrite the first event behind kiln's back: verify names it and fails.
  {
    storage::Connection c(d.dir.path() / "var/kiln.db", storage::Connection::Mode::kReadWrite);
    c.exec("DROP TRIGGER ledger_no_update");
    c.exec("UPDATE ledger SET tenant = 'mallory' WHERE seq = 1");
  }
  auto broken = d.kiln({"ledger", "verify"});
  BOOST_TEST(broken.exit_code == 1);
  BOOST_TEST(contains(broken.out, "ledger BROKEN at seq 1"), broken.out);
  // kiln serve says so when it starts, before it appends to the chain, and /metrics carries it
  // for an alert (kiln_ledger_intact 0).
  Child served({kKiln, "serve"}, d.env(), d.dir.path());
  BOOST_REQUIRE_MESSAGE(served.wait_for_stderr("ready:", 20s), served.stderr_so_far());
  const std::string log = served.stderr_so_far();
  BOOST_TEST(contains(log, "ledger BROKEN at seq 1: "), log);
  BOOST_TEST(contains(log, "WITH WARNINGS"), log);
  std::smatch port;
  BOOST_REQUIRE(std::regex_search(log, port, std::regex("listening on http://127.0.0.1:([0-9]+)")));
  const auto metrics =
      kiln::http::Client("http://127.0.0.1:" + port[1].str()).request("GET", "/metrics");
  BOOST_TEST(contains(metrics.body, "\nkiln_ledger_intact 0\n"), metrics.body);
  served.signal(SIGTERM);
  BOOST_TEST(served.wait(20s).exit_code == 0);
  // A backup of the broken database is not restored over the deployment: the restore checks the
  // chain first and leaves everything as it was.
  auto copy = d.kiln({"db", "backup", "broken.db"});
  BOOST_REQUIRE_MESSAGE(copy.exit_code == 0, copy.err);
  auto restored = d.kiln({"db", "restore", "broken.db"});
  BOOST_TEST(restored.exit_code == 1, restored.out << restored.err);
  BOOST_TEST(contains(restored.err, "its ledger is broken at seq 1"), restored.err);
  BOOST_TEST(contains(restored.err, "nothing restored"), restored.err);
  for (const auto& f : fs::directory_iterator(d.dir.path() / "var"))
    BOOST_TEST(f.path().filename().string().find("before-restore") == std::string::npos, f.path());
}

// ---- Missions, replay and policy from the command line -----------------------------------------

namespace {

json::object mission_of(const RunResult& r) {
  auto v = json::parse(r.out);
  return v.as_object().contains("mission") ? v.at("mission").as_object() : v.as_object();
}

}  // namespace

BOOST_AUTO_TEST_CASE(missions_run_from_the_cli_with_approvals_idempotency_and_replay) {
  Deployment d;
  auto templates = d.kiln({"mission", "templates"});
  BOOST_TEST(templates.exit_code == 0, templates.err);
  BOOST_TEST(contains(templates.out, "hello"));
  BOOST_TEST(contains(templates.out, "    apply    kiln.echo  after prepare; approval required\n"),
             templates.out);
  BOOST_TEST(contains(templates.out,
                      "    pause   kiln.sleep  after greet; up to 3 attempts; timeout 70000 ms\n"),
             templates.out);

  // A --param for a string input stays a string, though it reads as JSON (the template says so).
  auto numeric = d.kiln({"mission", "start", "hello", "--param", "who=42", "--json"});
  BOOST_TEST(numeric.exit_code == 0, numeric.err);
  BOOST_TEST(json::parse(numeric.out).at("mission").at("inputs").at("who") == "42", numeric.out);
  auto quoted = d.kiln({"mission", "start", "hello", "--param", "who=\"42\"", "--json"});
  BOOST_TEST(json::parse(quoted.out).at("mission").at("inputs").at("who") == "42", quoted.out);
  auto done = d.kiln({"mission", "start", "hello", "--param", "who=roaster", "--wait", "--json",
                      "--idempotency-key", "order-1"});
  BOOST_TEST(done.exit_code == 0, done.err);
  auto m = mission_of(done);
  BOOST_TEST(m.at("state").as_string() == "DONE");
  BOOST_TEST(m.at("steps").at(2).at("output").at("heard").as_string() == "hello, roaster");
  const std::string id(m.at("id").as_string());

  auto again = d.kiln({"mission", "start", "hello", "--param", "who=roaster", "--json",
                       "--idempotency-key", "order-1"});
  BOOST_TEST(again.exit_code == 0, again.err);
  BOOST_TEST(json::parse(again.out).at("created").as_bool() == false);
  BOOST_TEST(mission_of(again).at("id").as_string() == id);
  auto conflict =
      d.kiln({"mission", "start", "hello", "--param", "who=other", "--idempotency-key", "order-1"});
  BOOST_TEST(conflict.exit_code == 1);
  BOOST_TEST(contains(conflict.err, "conflict: idempotency key 'order-1' was already used"),
             conflict.err);

  auto bad = d.kiln({"mission", "start", "hello", "--param", "pause_ms=999999"});
  BOOST_TEST(bad.exit_code == 2);
  BOOST_TEST(contains(bad.err, "inputs.pause_ms"), bad.err);
  auto unknown = d.kiln({"mission", "start", "helo"});
  BOOST_TEST(unknown.exit_code == 2);
  BOOST_TEST(contains(unknown.err, "did you mean 'hello'?"), unknown.err);

  // Held for review, then held again before the step that needs approval.
  auto held = d.kiln({"mission", "start", "approval_demo", "--wait", "--json"});
  BOOST_TEST(held.exit_code == 0, held.err);
  const std::string held_id(mission_of(held).at("id").as_string());
  BOOST_TEST(mission_of(held).at("state").as_string() == "QUARANTINED");
  // A local actor is a person: not nobody, not an API key's "key:ID".
  auto nobody = d.kiln({"mission", "approve", held_id, "--as", " "});
  BOOST_TEST(nobody.exit_code == 2);
  BOOST_TEST(contains(nobody.err, "--as needs a name"), nobody.err);
  auto as_key = d.kiln({"mission", "approve", held_id, "--as", "key:k-0123456789ab"});
  BOOST_TEST(as_key.exit_code == 2);
  BOOST_TEST(contains(as_key.err, "names starting with 'key:' are the API keys'"), as_key.err);
  // Without --as: the login name, whatever $USER says.
  auto unnamed = d.kiln({"mission", "start", "hello", "--json"}, {{"USER", ""}});
  BOOST_TEST(unnamed.exit_code == 0, unnamed.err);
  BOOST_TEST(mission_of(unnamed).at("created_by").as_string().starts_with("local:"));
  BOOST_TEST(mission_of(unnamed).at("created_by") != "local:operator", unnamed.out);
  auto forbidden = d.kiln({"mission", "approve", held_id, "--as", "olga", "--role", "operator"});
  BOOST_TEST(forbidden.exit_code == 1);
  BOOST_TEST(contains(forbidden.err, "forbidden: approving a mission needs the approver role"),
             forbidden.err);
  auto first = d.kiln({"mission", "approve", held_id, "--as", "ana", "--role", "approver",
                       "--reason", "reviewed", "--wait", "--json"});
  BOOST_TEST(first.exit_code == 0, first.err);
  BOOST_TEST(mission_of(first).at("reason").as_string() == "APPROVAL_REQUIRED");
  auto second = d.kiln(
      {"mission", "approve", held_id, "--as", "ana", "--role", "approver", "--wait", "--json"});
  BOOST_TEST(mission_of(second).at("state").as_string() == "DONE", second.out);
  auto show = d.kiln({"mission", "show", held_id});
  BOOST_TEST(show.exit_code == 0);
  BOOST_TEST(contains(show.out, "mission.approved → PENDING (APPROVED) by ana: reviewed"),
             show.out);
  BOOST_TEST(contains(show.out, "mission.completed → DONE (COMPLETED)"), show.out);

  // Cancel a queued mission; list filters by state.
  auto queued = d.kiln({"mission", "start", "noop3", "--json"});
  const std::string queued_id(mission_of(queued).at("id").as_string());
  auto cancel = d.kiln({"mission", "cancel", queued_id, "--reason", "not needed"});
  BOOST_TEST(cancel.exit_code == 0, cancel.err);
  auto twice = d.kiln({"mission", "cancel", queued_id});
  BOOST_TEST(twice.exit_code == 1);
  BOOST_TEST(contains(twice.err, "already CANCELED"), twice.err);
  auto retry = d.kiln({"mission", "retry", queued_id});
  BOOST_TEST(retry.exit_code == 1);
  auto list = d.kiln({"mission", "list", "--state", "CANCELED", "--json"});
  BOOST_TEST(json::parse(list.out).as_array().size() == 1u);
  auto missing = d.kiln({"mission", "show", "m-0000000000000000"});
  BOOST_TEST(missing.exit_code == 1);
  BOOST_TEST(contains(missing.err, "not_found"), missing.err);

  // The tables replay from the ledger; a hand edit is found and named.
  auto replay = d.kiln({"ledger", "replay"});
  BOOST_TEST(replay.exit_code == 0, replay.out << replay.err);
  BOOST_TEST(contains(replay.out, "replay matches: 6 missions"), replay.out);
  // A match leaves nothing to look at: the default scratch database goes (one named with
  // --scratch stays).
  BOOST_TEST(!fs::exists(d.dir.path() / "var/kiln.db.replay.db"));
  BOOST_TEST(d.kiln({"ledger", "replay", "--scratch", "mine.db"}).exit_code == 0);
  BOOST_TEST(fs::exists(d.dir.path() / "mine.db"));
  {
    storage::Connection c(d.dir.path() / "var/kiln.db", storage::Connection::Mode::kReadWrite);
    c.exec("UPDATE missions SET state = 'DONE' WHERE id = '" + queued_id + "'");
  }
  auto differs = d.kiln({"ledger", "replay"});
  BOOST_TEST(differs.exit_code == 1);
  BOOST_TEST(
      contains(differs.out, "mission " + queued_id + ": state: live DONE, replayed CANCELED"),
      differs.out);
  BOOST_TEST(fs::exists(d.dir.path() / "var/kiln.db.replay.db"));  // kept to look at
  BOOST_TEST(d.kiln({"ledger", "verify"}).exit_code == 0);
}

BOOST_AUTO_TEST_CASE(serve_runs_mission_workers) {
  Deployment d;
  Child serve({kKiln, "serve", "--set", "missions.poll_ms=20"}, d.env(), d.dir.path());
  BOOST_REQUIRE(serve.wait_for_stderr("ready:", 20s));
  BOOST_TEST(contains(d.kiln({"serve", "--help"}).out, "Usage: kiln serve"));
  auto start = d.kiln({"mission", "start", "hello", "--json"});
  BOOST_REQUIRE_EQUAL(start.exit_code, 0);
  const std::string id(mission_of(start).at("id").as_string());
  std::string state;
  for (int i = 0; i < 200 && state != "DONE"; ++i) {
    std::this_thread::sleep_for(50ms);
    state =
        std::string(mission_of(d.kiln({"mission", "show", id, "--json"})).at("state").as_string());
  }
  BOOST_TEST(state == "DONE");
  serve.signal(SIGTERM);
  auto r = serve.wait(20s);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(contains(r.err, "mission worker(s) running"), r.err);
  BOOST_TEST(!contains(r.err, "missions.keep_files"), r.err);  // files kept unless configured
}

// Retention: `kiln serve` with missions.keep_files runs it; `kiln mission prune` asks for an
// age it can read and says what it released (the releases themselves: unit_missions
// retention_releases_the_files_of_missions_finished_before_the_cutoff,
// integration_telemetry_ingest).
BOOST_AUTO_TEST_CASE(finished_missions_files_are_pruned_by_age) {
  Deployment d;
  Child serve({kKiln, "serve", "--set", "missions.keep_files=90d"}, d.env(), d.dir.path());
  BOOST_REQUIRE(serve.wait_for_stderr("ready:", 20s));
  serve.signal(SIGTERM);
  auto r = serve.wait(20s);
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(contains(r.err,
                      "finished missions' files are released after 90d "
                      "(missions.keep_files)"),
             r.err);
  auto bad = d.kiln({"serve", "--set", "missions.keep_files=3 months"});
  BOOST_TEST(bad.exit_code == 3, bad.err);
  BOOST_TEST(contains(bad.err, "missions.keep_files: '3 months' is not an age"), bad.err);

  auto no_age = d.kiln({"mission", "prune"});
  BOOST_TEST(no_age.exit_code == 2);
  BOOST_TEST(contains(no_age.err,
                      "say how old: --older-than AGE (e.g. 90d), or set "
                      "missions.keep_files"),
             no_age.err);
  auto not_age = d.kiln({"mission", "prune", "--older-than", "90"});
  BOOST_TEST(not_age.exit_code == 2);
  BOOST_TEST(contains(not_age.err, "--older-than '90' is not an age"), not_age.err);
  auto too_old = d.kiln({"mission", "prune", "--older-than", "36601d"});
  BOOST_TEST(too_old.exit_code == 2);
  BOOST_TEST(contains(too_old.err, "up to 100 years"), too_old.err);
  // Dashes forgotten: refused, not ignored (it once pruned for real).
  auto no_dashes = d.kiln({"mission", "prune", "--older-than", "0s", "dry-run"});
  BOOST_TEST(no_dashes.exit_code == 2);
  BOOST_TEST(contains(no_dashes.err, "unexpected argument 'dry-run' (did you mean --dry-run?)"),
             no_dashes.err);
  auto typo = d.kiln({"mission", "prune", "--dryrun"});
  BOOST_TEST(typo.exit_code == 2);
  BOOST_TEST(contains(typo.err, "unknown option '--dryrun'; did you mean '--dry-run'?"), typo.err);
  BOOST_TEST(d.kiln({"db", "status", "extra"}).exit_code == 2);
  auto elsewhere = d.kiln({"mission", "cancel", "m-1", "--dry-run"});
  BOOST_TEST(elsewhere.exit_code == 2);
  BOOST_TEST(contains(elsewhere.err,
                      "--dry-run is not an option of kiln mission cancel; kiln mission prune "
                      "takes it"),
             elsewhere.err);
  auto unquoted = d.kiln({"say", "Drop", "soon", "now."});
  BOOST_TEST(unquoted.exit_code == 2);
  BOOST_TEST(contains(unquoted.err,
                      "unexpected argument 'soon' (it takes 1 argument: quote one "
                      "that has spaces)"),
             unquoted.err);
  BOOST_TEST(d.kiln({"mission", "prune", "--older-than", "1d", "--tenant", ""}).exit_code == 2);
  // Before 1970 the milliseconds stay positive.
  auto century = d.kiln({"mission", "prune", "--older-than", "36500d", "--dry-run", "--json"});
  BOOST_TEST(century.exit_code == 0, century.err);
  BOOST_TEST(!contains(century.out, ".-"), century.out);
  auto none = d.kiln({"mission", "prune", "--set", "missions.keep_files=30d", "--dry-run"});
  BOOST_TEST(none.exit_code == 0, none.err);
  BOOST_TEST(contains(none.out,
                      "would release 0 file(s), 0 bytes, of 0 mission(s) finished "
                      "before "),
             none.out);
  auto remote =
      d.kiln({"mission", "prune", "--older-than", "1d", "--server", "http://127.0.0.1:9"});
  BOOST_TEST(remote.exit_code == 2);
  BOOST_TEST(contains(remote.err, "not available with --server"), remote.err);
  BOOST_TEST(contains(d.kiln({"mission", "prune", "--help"}).out, "mission.artifacts_released"));
}

// A mission that waits for its tenant's capacity, held by one QUARANTINED for an approver: --wait
// says what it waits for and, past --timeout, that it stays waiting (it once waited silently and
// then said it went on "in the background" with nothing running it); `mission work --until-idle`
// ends and names it.
// Numbers in options are the whole text, finite and in range, and said before anything is done:
// "10m" was read as 10 seconds (after the mission had started), "5x" as 5, "2h" of grace as 2 s.
BOOST_AUTO_TEST_CASE(numbers_in_options_are_whole_and_in_range) {
  Deployment d;
  BOOST_REQUIRE_EQUAL(d.kiln({"mission", "start", "hello"}).exit_code, 0);
  auto started = d.kiln({"mission", "start", "hello", "--wait", "--timeout", "10m"});
  BOOST_TEST(started.exit_code == 2, started.out << started.err);
  BOOST_TEST(contains(started.err,
                      "--timeout (seconds) takes a number from 0.001 to 864000, not "
                      "'10m'"),
             started.err);
  auto listed = d.kiln({"mission", "list", "--json"});
  BOOST_REQUIRE_MESSAGE(listed.exit_code == 0, listed.err);
  BOOST_TEST(json::parse(listed.out).as_array().size() == 1u, listed.out);  // the first only
  for (const auto& [args, said] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"mission", "list", "--limit", "5x"},
            "--limit takes a whole number from 1 to 100000, not '5x'"},
           {{"mission", "list", "--limit", "2.5"},
            "--limit takes a whole number from 1 to 100000, not '2.5'"},
           {{"mission", "start", "hello", "--wait", "--timeout", "nan"}, "not 'nan'"},
           {{"mission", "work", "--workers", "2x"}, "--workers takes a whole number from 1 to 256"},
           {{"say", "Hi.", "--speed", "9"}, "--speed takes a number from 0.25 to 4, not '9'"},
           {{"devices", "rotate", "sim-9", "--grace", "2h"},
            "--grace takes a whole number from 0 to 2592000, not '2h'"},
           {{"devices", "rotate", "sim-9", "--grace", "2h", "--server", "http://127.0.0.1:9",
             "--api-key", "k-x.y"},
            "--grace takes a whole number from 0 to 2592000, not '2h'"},
           {{"mission", "approve", "m-1", "--wait", "--timeout", "1h", "--server",
             "http://127.0.0.1:9", "--api-key", "k-x.y"},
            "--timeout (seconds) takes a number from 0.001 to 864000, not '1h'"}}) {
    auto r = d.kiln(args);
    BOOST_TEST(r.exit_code == 2, args[0] << " " << args[1] << ": " << r.out << r.err);
    BOOST_TEST(contains(r.err, said), r.err);
  }
}

BOOST_AUTO_TEST_CASE(waiting_for_capacity_is_said_not_silent) {
  Deployment d;
  std::ofstream(d.dir.path() / "policy.yaml")
      << "version: 1\n"
         "tenants:\n"
         "  acme: {missions: ['*'], review: [approval_demo], max_active: 1, retry_after_ms: 50}\n";
  const std::map<std::string, std::string> policy{{"KILN_POLICY__FILE", "policy.yaml"}};
  auto held = d.kiln({"mission", "start", "approval_demo", "--tenant", "acme", "--json"}, policy);
  BOOST_REQUIRE_MESSAGE(held.exit_code == 0, held.err);
  BOOST_REQUIRE(json::parse(held.out).at("mission").at("state") == "QUARANTINED");
  auto waited =
      d.kiln({"mission", "start", "hello", "--tenant", "acme", "--wait", "--timeout", "1"}, policy);
  BOOST_TEST(waited.exit_code == 1, waited.out << waited.err);
  BOOST_TEST(contains(waited.err, "waits: tenant acme is at capacity (policy max_active)"),
             waited.err);
  BOOST_TEST(contains(waited.err,
                      "QUARANTINED ones wait for an approver (kiln mission list "
                      "--tenant acme)"),
             waited.err);
  BOOST_TEST(contains(waited.out,
                      "stays RETRY (TENANT_AT_CAPACITY); a kiln serve or kiln mission "
                      "work on this database runs it on"),
             waited.out);
  auto idle = d.kiln({"mission", "work", "--until-idle"}, policy);
  BOOST_TEST(idle.exit_code == 0, idle.err);
  BOOST_TEST(contains(idle.out,
                      "1 mission(s) wait for their tenant's capacity (policy "
                      "max_active): m-"),
             idle.out);
  BOOST_TEST(contains(idle.out, " (tenant acme)"), idle.out);
  // A key for a tenant the policy does not list (a typo of acme) is made, with a warning.
  auto typo_key = d.kiln({"keys", "create", "--tenant", "acmee", "--role", "operator"}, policy);
  BOOST_TEST(typo_key.exit_code == 0, typo_key.err);
  BOOST_TEST(contains(typo_key.err,
                      "has no rule for tenant 'acmee' (and no \"*\"): every mission "
                      "this key starts is BLOCKED"),
             typo_key.err);
  BOOST_TEST(
      !contains(d.kiln({"keys", "create", "--tenant", "acme", "--role", "operator"}, policy).err,
                "has no rule"));
  // A refusal says which part of the policy refused it — here the tenant a missing --tenant is.
  auto unlisted = d.kiln({"mission", "start", "hello"}, policy);
  BOOST_TEST(unlisted.exit_code == 1);
  BOOST_TEST(contains(unlisted.out, "BLOCKED"), unlisted.out);
  BOOST_TEST(contains(unlisted.out,
                      "the policy has no rule for tenant 'default' (and no \"*\") — "
                      "missions started without --tenant are tenant 'default'"),
             unlisted.out);
}

BOOST_AUTO_TEST_CASE(policy_validate_reports_problems_with_positions) {
  Deployment d;
  auto ok = d.kiln({"policy", "validate"});
  BOOST_TEST(ok.exit_code == 0, ok.err);
  BOOST_TEST(contains(ok.out, "config/policy.yaml (embedded) is valid"), ok.out);
  std::ofstream(d.dir.path() / "policy.yaml") << "version: 1\n"
                                                 "tenants:\n"
                                                 "  acme:\n"
                                                 "    missions: [hello, helo]\n"
                                                 "    deny: [hello]\n"
                                                 "approvals:\n"
                                                 "  tools: {kiln.slep: required}\n";
  auto bad = d.kiln({"policy", "validate", "--file", "policy.yaml"});
  BOOST_TEST(bad.exit_code == 3);
  BOOST_TEST(contains(bad.err,
                      "policy.yaml:4:23: tenants.acme.missions names unknown mission "
                      "template 'helo'; did you mean 'hello'?"),
             bad.err);
  BOOST_TEST(contains(bad.err, "contradiction: tenants.acme both allows and denies 'hello'"),
             bad.err);
  BOOST_TEST(contains(bad.err, "unknown tool 'kiln.slep'; did you mean 'kiln.sleep'?"), bad.err);
  auto as_json = d.kiln({"policy", "validate", "--file", "policy.yaml", "--json"});
  BOOST_TEST(as_json.exit_code == 3);
  BOOST_TEST(json::parse(as_json.out).at("errors").as_array().size() == 3u, as_json.out);
  // serve refuses a deployment whose policy is invalid, with the same message.
  auto serve = d.kiln({"serve", "--set", "policy.file=policy.yaml"});
  BOOST_TEST(serve.exit_code == 3);
  BOOST_TEST(contains(serve.err, "both allows and denies"), serve.err);
  // A structural mistake does not hide the rest: every problem, and the warnings, in one run;
  // validate does not tell its user to run validate.
  std::ofstream(d.dir.path() / "mixed.yaml") << "version: 1\n"
                                                "isolation: {default: isolatd}\n"
                                                "tenants:\n"
                                                "  acme:\n"
                                                "    missions: [helo]\n"
                                                "    rate_limits:\n"
                                                "      tool_calls: {per_second: 5, burst: 5}\n"
                                                "      per_tool: {kiln.noop: {per_second: 50}}\n";
  auto mixed = d.kiln({"policy", "validate", "--file", "mixed.yaml"});
  BOOST_TEST(mixed.exit_code == 3);
  BOOST_TEST(contains(mixed.err, "isolation.default 'isolatd' is not one of"), mixed.err);
  BOOST_TEST(contains(mixed.err, "unknown mission template 'helo'"), mixed.err);
  BOOST_TEST(contains(mixed.err, "warning: mixed.yaml:8:18: "), mixed.err);
  BOOST_TEST(!contains(mixed.err, "`kiln policy validate` checks"), mixed.err);
  // A valid policy's warnings: printed by validate, not repeated by every other command.
  std::ofstream(d.dir.path() / "warned.yaml") << "version: 1\n"
                                                 "tenants:\n"
                                                 "  acme:\n"
                                                 "    missions: ['*']\n"
                                                 "    rate_limits:\n"
                                                 "      tool_calls: {per_second: 5, burst: 5}\n"
                                                 "      per_tool: {kiln.noop: {per_second: 50}}\n";
  auto warned = d.kiln({"policy", "validate", "--file", "warned.yaml"});
  BOOST_TEST(warned.exit_code == 0, warned.err);
  BOOST_TEST(contains(warned.out, "warning: warned.yaml:7:18: "), warned.out);
  BOOST_TEST(!contains(warned.err, "warned.yaml"), warned.err);  // printed once
  auto other = d.kiln({"mission", "templates", "--set", "policy.file=warned.yaml"});
  BOOST_TEST(other.exit_code == 0, other.err);
  BOOST_TEST(!contains(other.err, "warned.yaml"), other.err);
  for (const char* cmd :
       {"start", "list", "show", "approve", "cancel", "retry", "work", "templates"}) {
    auto help = d.kiln({"mission", cmd, "--help"});
    BOOST_TEST(contains(help.out, std::string("Usage: kiln mission ") + cmd), cmd);
  }
  BOOST_TEST(contains(d.kiln({"ledger", "replay", "--help"}).out, "scratch database"));
}

BOOST_AUTO_TEST_CASE(say_speaks_with_the_embedded_voice_into_a_file) {
  Deployment d;
  auto say = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  auto r = say({"say", "First crack at nine minutes twelve.", "-o", "fc.wav"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(contains(r.out, "wrote fc.wav"), r.out);
  BOOST_TEST(contains(r.out, "kiln-slt-small"), r.out);
  std::ifstream f(d.dir.path() / "fc.wav", std::ios::binary);
  std::string head(12, '\0');
  f.read(head.data(), 12);
  BOOST_TEST(head.substr(0, 4) == "RIFF");
  BOOST_TEST(head.substr(8, 4) == "WAVE");
  BOOST_TEST(fs::file_size(d.dir.path() / "fc.wav") > 32000u);  // > 1 s at 16 kHz, 16 bit
  // The extension picks the format; the call is a tool call in the ledger.
  auto flac = say({"say", "Drop.", "-o", "drop.flac", "--speed", "1.5"});
  BOOST_TEST(flac.exit_code == 0, flac.err);
  {
    std::ifstream in(d.dir.path() / "drop.flac", std::ios::binary);
    std::string magic(4, '\0');
    in.read(magic.data(), 4);
    BOOST_TEST(magic == "fLaC");
  }
  auto ledger = say({"ledger", "export"});
  BOOST_TEST(contains(ledger.out, "tts.synthesize"), ledger.out);
  // Errors say what was wrong.
  auto voice = say({"say", "Hi.", "--voice", "nobody", "-o", "x.wav"});
  BOOST_TEST(voice.exit_code == 1);
  BOOST_TEST(contains(voice.err, "unknown voice 'nobody'; voices: kiln-slt-small"), voice.err);
  BOOST_TEST(contains(voice.err, "({\"voices\":[\"kiln-slt-small\""), voice.err);  // details
  auto speed = say({"say", "Hi.", "--speed", "fast"});
  BOOST_TEST(speed.exit_code == 2, speed.err);
  BOOST_TEST(contains(speed.err, "--speed"), speed.err);
  auto help = say({"say", "--help"});
  BOOST_TEST(contains(help.out, "Usage: kiln say TEXT"), help.out);
  // Without the tts_torch plugin the kind is off and say says so.
  auto off = d.kiln({"say", "Hi."});
  BOOST_TEST(off.exit_code == 1);
  BOOST_TEST(contains(off.err, "provider_unavailable"), off.err);
}

BOOST_AUTO_TEST_CASE(analyze_reads_an_artisan_log_with_marked_or_detected_events) {
  Deployment d;
  auto analyze = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "analyze");
    return d.kiln_all_plugins(std::move(args));
  };
  const std::string alog =
      std::string(KILN_SOURCE_DIR) + "/tests/fixtures/artisan-alog/26-02-01_1812_Jigesa_no2.alog";
  auto text = analyze({alog});
  BOOST_TEST(text.exit_code == 0, text.err);
  // It reads the file only, as its help says: no database appears.
  BOOST_TEST(!fs::exists(d.dir.path() / "var"));
  BOOST_TEST(contains(d.kiln({"help", "analyze"}).out, "It reads the file only"));
  // A file without end is not read to the end of memory.
  auto endless = analyze({"/dev/zero"});
  BOOST_TEST(endless.exit_code != 0);
  BOOST_TEST(contains(endless.err, "/dev/zero is larger than 64 MiB"), endless.err);
  // Times in m:ss after CHARGE, temperatures and rates with their unit, events as roasters name
  // them.
  BOOST_TEST(contains(text.out, "FCs       7:30    187.0"), text.out);
  BOOST_TEST(contains(text.out, "DRY END   "), text.out);
  BOOST_TEST(contains(text.out, "EVENT     TIME    BT °C"), text.out);
  BOOST_TEST(contains(text.out, "°C/min"), text.out);
  // Each event says where it came from; DRY_END at TP is explained, not left to look like a bug.
  BOOST_TEST(contains(text.out, "INDEX   FROM"), text.out);
  BOOST_TEST(contains(text.out,
                      "at TP: BT was already past the DRY END temperature (18.0 °C, the file's "
                      "phases) when the beans turned; --phases sets others"),
             text.out);
  // --phases: DRY END from 150 °C instead; the drying phase as long as it took to get there.
  auto phased = analyze({alog, "--phases", "150,150,187,225", "--json"});
  BOOST_REQUIRE_MESSAGE(phased.exit_code == 0, phased.err);
  const auto with_phases = json::parse(phased.out);
  BOOST_TEST(with_phases.at("event_sources").at("DRY_END").as_string() != "TP", phased.out);
  BOOST_TEST(with_phases.at("events").at("DRY_END").at("bt").as_double() >= 150.0, phased.out);
  BOOST_TEST(with_phases.at("phases").at("drying").as_double() > 180.0, phased.out);
  BOOST_TEST(with_phases.at("phase_temperatures").as_array().size() == 4u);
  auto falling = analyze({alog, "--phases", "150,150,100,225"});
  BOOST_TEST(falling.exit_code == 2);  // invalid_input: the input to fix, as for every command
  BOOST_TEST(contains(falling.err, "phases rise through a roast"), falling.err);
  auto three = analyze({alog, "--phases", "150,187,225"});
  BOOST_TEST(three.exit_code == 2);
  BOOST_TEST(contains(three.err, "is not four temperatures"), three.err);
  BOOST_TEST(contains(text.out, "AUC 423 °C·min"), text.out);
  BOOST_TEST(contains(text.out, "weight 400.0 g green, 351.0 g roasted: 12.3 % loss"), text.out);
  auto detected = analyze({alog, "--detect", "--json"});
  BOOST_TEST(detected.exit_code == 0, detected.err);
  auto v = json::parse(detected.out);
  BOOST_TEST(v.at("events").at("DROP").at("time").as_double() == 527.001);
  BOOST_TEST(v.at("events").at("TP").at("time").as_double() == 61.0);
  // Numbers as a person writes them (not 6.1E1), still doubles when read back.
  BOOST_TEST(contains(detected.out, "\"time\": 61.0"), detected.out);
  BOOST_TEST(v.at("phases").as_object().contains("dtr"));
  BOOST_TEST(v.at("event_sources").at("CHARGE").as_string() == "roaster state");
  // The detector's kind config is checked before anything runs (invalid configuration).
  auto bad_lag = analyze({alog, "--detect", "--set", "event_detector.probe_lag_s=99"});
  BOOST_TEST(bad_lag.exit_code == 3);
  BOOST_TEST(contains(bad_lag.err, "event_detector.probe_lag_s: must be from 0 to 60, got 99"),
             bad_lag.err);
  // An isolated roast plugin has no nodes in its node-host: detect says so instead of guessing.
  auto isolated = analyze({alog, "--detect", "--set", "runtime.isolated_plugins=[roast]"});
  BOOST_TEST(isolated.exit_code == 1);
  BOOST_TEST(contains(isolated.err, "no event_detector node is resolved here"), isolated.err);
  // Bad input: a clear error naming the file and what is wrong.
  std::ofstream(d.dir.path() / "broken.alog") << "{'timex': [0, 1], 'temp1': [1, 2], 'temp2': [1,";
  auto broken = analyze({(d.dir.path() / "broken.alog").string()});
  BOOST_TEST(broken.exit_code == 2);
  BOOST_TEST(contains(broken.err, "not a Python literal: line 1"), broken.err);
  auto missing = analyze({"nope.alog"});
  BOOST_TEST(missing.exit_code == 1);
  BOOST_TEST(contains(missing.err, "nope.alog: no such file"), missing.err);
  auto directory = analyze({d.dir.path().string()});
  BOOST_TEST(directory.exit_code == 1);
  BOOST_TEST(contains(directory.err, "is a directory, not an Artisan .alog file"), directory.err);
  std::ofstream(d.dir.path() / "empty.alog").flush();
  auto empty = analyze({(d.dir.path() / "empty.alog").string()});
  BOOST_TEST(empty.exit_code == 1);
  BOOST_TEST(contains(empty.err, "empty.alog is empty, not an Artisan .alog file"), empty.err);
  // Reading a file changes nothing: no ledger (no database) appears where it ran.
  BOOST_TEST(!fs::exists(d.dir.path() / "var" / "kiln.db"));
}

// A device that keeps its own secret key (firmware) is registered and rotated by its public key,
// and no key file is written for it; a key file that is missing or is none is named as such.
BOOST_AUTO_TEST_CASE(devices_keeping_their_own_keys_and_key_files_that_are_not) {
  Deployment d;
  // RFC 8032's test keys 1 and 2.
  const std::string pub1 = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
  const std::string pub2 = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
  auto added = d.kiln({"devices", "add", "fw-1", "--public-key", pub1});
  BOOST_REQUIRE_MESSAGE(added.exit_code == 0, added.err);
  BOOST_TEST(
      std::regex_search(added.out, std::regex("added key [0-9a-f]{16} for device fw-1 \\(tenant "
                                              "default\\); the device holds its own secret key")),
      added.out);
  BOOST_TEST(!fs::exists(d.dir.path() / "var/devices"));
  auto rotated = d.kiln({"devices", "rotate", "fw-1", "--public-key", pub2, "--grace", "60"});
  BOOST_REQUIRE_MESSAGE(rotated.exit_code == 0, rotated.err);
  BOOST_TEST(contains(rotated.out, "the device holds its own secret key"), rotated.out);
  auto listed = d.kiln({"devices", "list", "--json"});
  BOOST_REQUIRE_MESSAGE(listed.exit_code == 0, listed.err);
  std::multiset<std::string> states;
  const auto keys = json::parse(listed.out);
  for (const auto& k : keys.as_array())
    if (k.at("device") == "fw-1") states.insert(std::string(k.at("status").as_string()));
  BOOST_TEST((states == std::multiset<std::string>{"active", "retiring"}), listed.out);
  auto short_key = d.kiln({"devices", "add", "fw-2", "--public-key", "abcd"});
  BOOST_TEST(short_key.exit_code == 2, short_key.err);
  BOOST_TEST(contains(short_key.err, "a public key is 64 hex digits"), short_key.err);
  auto missing = d.kiln({"record", "--key", "missing.key"});
  BOOST_TEST(missing.exit_code != 0);
  BOOST_TEST(contains(missing.err,
                      "cannot read device key missing.key (`kiln devices add` writes "
                      "it)"),
             missing.err);
  const auto bad = d.dir.path() / "bad.key";
  std::ofstream(bad) << "hello";
  fs::permissions(bad, fs::perms::owner_read | fs::perms::owner_write);
  auto not_a_key = d.kiln({"record", "--key", bad.string()});
  BOOST_TEST(not_a_key.exit_code != 0);
  BOOST_TEST(contains(not_a_key.err, "is not a device key file (not JSON"), not_a_key.err);
}

// `kiln record --roasts 2` on the simulated roaster: two roasts back to back (cooling, OFF,
// preheat, CHARGE), recorded locally, become two sessions closed by their DROPs.
BOOST_AUTO_TEST_CASE(record_two_roasts_back_to_back) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  auto added = kiln({"devices", "add", "sim-2", "--key-out", "sim-2.key"});
  BOOST_REQUIRE_MESSAGE(added.exit_code == 0, added.err);
  auto rec = kiln({"record", "--key", "sim-2.key", "--speed", "0", "--roasts", "2"});
  BOOST_REQUIRE_MESSAGE(rec.exit_code == 0, rec.out + rec.err);
  BOOST_TEST(contains(rec.out, "refused 0, waiting in the spool 0"), rec.out);
  // Progress every 30 s of roast: m:ss, temperatures and the rate of rise.
  BOOST_TEST(std::regex_search(rec.out, std::regex("\n +4:30  BT [0-9.]+  ET [0-9.]+  RoR "
                                                   "-?[0-9]+\\.[0-9]  ROASTING  sent ")),
             rec.out.substr(0, 600));
  auto list = kiln({"sessions", "list", "--json"});
  BOOST_REQUIRE_MESSAGE(list.exit_code == 0, list.err);
  const auto sessions = json::parse(list.out).as_array();
  BOOST_REQUIRE_EQUAL(sessions.size(), 2u);
  for (const auto& x : sessions) {
    BOOST_TEST(x.at("state").as_string() == "closed");
    BOOST_TEST(x.at("close_reason").as_string() == "drop", json::serialize(x));
  }
  // Newest first; the second CHARGE after the first roast, its cooling and the preheat.
  const double gap =
      sessions[0].at("charge_t").as_double() - sessions[1].at("charge_t").as_double();
  BOOST_TEST((gap > 600 + 120 + 120 && gap < 3600), gap);
  auto samples_of = [&](const json::value& session) {
    auto shown = kiln({"sessions", "show", std::string(session.at("id").as_string()), "--json"});
    BOOST_REQUIRE_MESSAGE(shown.exit_code == 0, shown.err);
    return json::parse(shown.out).at("samples").as_int64();
  };
  const auto first_samples = samples_of(sessions[1]), second_samples = samples_of(sessions[0]);
  // Without --json: what a roaster reads (not the JSON).
  const std::string first_id(sessions[1].at("id").as_string());
  auto shown = kiln({"sessions", "show", first_id});
  BOOST_TEST(contains(shown.out, "session " + first_id + " (device sim-2, tenant default)"),
             shown.out);
  BOOST_TEST(contains(shown.out, "  state:    closed (closed by drop)"), shown.out);
  BOOST_TEST(std::regex_search(shown.out, std::regex("  roast:    [0-9]+:[0-9]{2} CHARGE to DROP")),
             shown.out);
  BOOST_TEST(contains(shown.out, "  readings: " + std::to_string(first_samples)), shown.out);
  BOOST_TEST(contains(shown.out, "kiln report " + first_id + " -o report.html"), shown.out);
  // Recorded again: a new boot, whose clock starts at the wall clock's now — long before the
  // readings above, which ran ahead of it at full speed. A session of its own, and the earlier
  // sessions keep exactly their own readings.
  auto rec2 = kiln({"record", "--key", "sim-2.key", "--speed", "0"});
  BOOST_REQUIRE_MESSAGE(rec2.exit_code == 0, rec2.out + rec2.err);
  auto list2 = kiln({"sessions", "list", "--json"});
  const auto after = json::parse(list2.out).as_array();
  BOOST_REQUIRE_EQUAL(after.size(), 3u);
  std::set<std::int64_t> boots;
  for (const auto& x : after) {
    BOOST_TEST(x.at("close_reason").as_string() == "drop", json::serialize(x));
    boots.insert(x.at("first_boot").as_int64());
  }
  BOOST_TEST(boots.size() == 2u);  // two recordings
  BOOST_TEST(samples_of(sessions[1]) == first_samples);
  BOOST_TEST(samples_of(sessions[0]) == second_samples);
  // The roaster's newest session is the newest recording's, though its device times are earlier:
  // listed first for the device, and what `--device` marks (it marked an older roast).
  const std::int64_t newest_boot = *boots.rbegin();
  auto of_device = kiln({"sessions", "list", "--device", "sim-2", "--json"});
  BOOST_REQUIRE_MESSAGE(of_device.exit_code == 0, of_device.err);
  const auto by_device = json::parse(of_device.out).as_array();
  BOOST_REQUIRE_EQUAL(by_device.size(), 3u);
  BOOST_TEST(by_device[0].at("first_boot").as_int64() == newest_boot);
  BOOST_TEST(by_device[1].at("id") == sessions[0].at("id"));
  BOOST_TEST(by_device[2].at("id") == sessions[1].at("id"));
  auto marked =
      kiln({"sessions", "mark", "--device", "sim-2", "FCs", "--at", "8:00", "--no-report"});
  BOOST_REQUIRE_MESSAGE(marked.exit_code == 0, marked.out + marked.err);
  BOOST_TEST(contains(marked.out, std::string(by_device[0].at("id").as_string())), marked.out);
  // Paged one at a time, the device's order holds across pages.
  auto page2 = kiln({"sessions", "list", "--device", "sim-2", "--json", "--limit", "1",
                     "--starting-after", std::string(by_device[0].at("id").as_string())});
  BOOST_REQUIRE_MESSAGE(page2.exit_code == 0, page2.err);
  BOOST_TEST(json::parse(page2.out).at(0).at("id") == sessions[0].at("id"), page2.out);
}

// A recording machine needs no voice: record, analyze and report resolve only the nodes they use,
// so a TTS node that cannot run (here an ungated one, under strict gates; a missing voice file
// fails the same way) stops only what speaks.
BOOST_AUTO_TEST_CASE(record_analyze_and_report_do_not_depend_on_the_tts_node) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) {
    args.insert(args.end(), {"--set", "nodes.tts_engine=espeak"});
    return d.kiln_all_plugins(std::move(args));
  };
  BOOST_REQUIRE(kiln({"devices", "add", "sim-7", "--key-out", "sim-7.key"}).exit_code == 0);
  auto rec = kiln({"record", "--key", "sim-7.key", "--speed", "0"});
  BOOST_TEST(rec.exit_code == 0, rec.out + rec.err);
  BOOST_TEST(contains(rec.out, "refused 0, waiting in the spool 0"), rec.out);
  auto list = kiln({"sessions", "list", "--json"});
  const auto sessions = json::parse(list.out).as_array();
  BOOST_REQUIRE_EQUAL(sessions.size(), 1u);
  auto report = kiln({"report", std::string(sessions[0].at("id").as_string()), "-o", "r.html"});
  BOOST_TEST(report.exit_code == 0, report.out + report.err);
  const std::string alog =
      std::string(KILN_SOURCE_DIR) + "/tests/fixtures/artisan-alog/26-02-01_1812_Jigesa_no2.alog";
  auto analyzed = kiln({"analyze", alog, "--detect"});
  BOOST_TEST(analyzed.exit_code == 0, analyzed.err);
  // What speaks still refuses the ungated node, naming it.
  auto say = kiln({"say", "hello", "-o", "hello.wav"});
  BOOST_TEST(say.exit_code == 4, say.err);
  BOOST_TEST(contains(say.err, "tts_engine/espeak"), say.err);
}

// A device driver is gated on the control's readings read through its own frames: a driver of a
// made-up line protocol (tests/plugins/test_driver.cpp) passes when it parses its lines right,
// fails parity when its parser mixes up BT and ET, and may not declare a difference intended.
// The readings file stays in the gates directory for a plugin's own tests.
// The event detector is gated from the CLI as every kind is: its contract and parity suites run
// against the plugin's file (the default node needs no gate; another detector would).
BOOST_AUTO_TEST_CASE(the_event_detector_is_gated_from_the_cli) {
  Deployment d;
  auto r = d.kiln_all_plugins({"gate", "run", "event_detector/artisan", "--json"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto v = json::parse(r.out);
  BOOST_TEST(v.at("result") == "PASS");
  BOOST_TEST(v.at("provider") == "roast");
  BOOST_TEST(v.at("contract").at("passed").as_bool());
  BOOST_TEST(!v.at("contract").at("checks").as_array().empty());
  BOOST_TEST(v.at("parity").at("passed").as_bool());
  BOOST_TEST(!v.at("parity").at("checks").as_array().empty());
  BOOST_TEST(v.at("plugin_sha256").as_string().size() == 64u);
  // A role that is none is named with the ones there are.
  auto root = d.kiln({"keys", "create", "--tenant", "a", "--role", "root"});
  BOOST_TEST(root.exit_code == 2);
  BOOST_TEST(contains(root.err,
                      "--role 'root' is not one of recorder, viewer, operator, "
                      "approver, admin"),
             root.err);
}

BOOST_AUTO_TEST_CASE(a_device_driver_is_gated_through_its_own_frames) {
  Deployment d;
  auto gate = [&](const std::string& node) {
    return d.kiln({"gate", "run", "telemetry_driver/" + node, "--set",
                   std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                       KILN_TEST_PLUGIN_DIR + "/test_driver]"});
  };
  auto lines = gate("lines");
  BOOST_TEST(lines.exit_code == 0, lines.out << lines.err);
  BOOST_TEST(contains(lines.out, "gate telemetry_driver/lines: PASS"), lines.out);
  const auto readings =
      kiln::nodes::read_gate_readings(d.gates / "telemetry_driver.readings.jsonl");
  BOOST_TEST(readings.size() == 720u);
  BOOST_TEST(std::any_of(readings.begin(), readings.end(), [](const kiln::telemetry::Sample& s) {
    return s.state == 6 && s.bt > 150;
  }));
  auto swapped = gate("lines_swapped");
  BOOST_TEST(swapped.exit_code != 0);
  BOOST_TEST(contains(swapped.out, "FAIL"), swapped.out);
  BOOST_TEST(contains(swapped.out + swapped.err, "the candidate reads what the control reads"),
             swapped.out);
  auto intended = gate("lines_intended");
  BOOST_TEST(intended.exit_code != 0);
  BOOST_TEST(contains(intended.out + intended.err, "telemetry_driver parity takes none"),
             intended.out);
  // The status table keeps its columns whatever the names' lengths.
  auto status = d.kiln({"gate", "status", "--set",
                        std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                            KILN_TEST_PLUGIN_DIR + "/test_driver]"});
  const auto gate_col = status.out.find("GATE") - status.out.find("NODE");
  std::istringstream status_lines(status.out);
  int rows_seen = 0;
  for (std::string row; std::getline(status_lines, row);)
    if (row.rfind("telemetry_driver/lines", 0) == 0) {
      ++rows_seen;
      BOOST_TEST(
          (row.compare(gate_col, 6, "passed") == 0 || row.compare(gate_col, 6, "failed") == 0),
          row);
    }
  BOOST_TEST(rows_seen == 3, status.out);
  // Recording with it: a roaster without a state channel (every line's state 0) has its roast
  // counted by the event detector's DROP, and the progress shows no state.
  {
    std::ofstream lines_file(d.dir.path() / "roast.lines");
    lines_file.precision(17);
    for (const auto& r : readings)
      lines_file << r.t << "," << r.bt << "," << r.et << "," << r.ror << "," << r.heater << ","
                 << r.fan << "," << r.drum << ",0\n";
  }
  // `config check` builds a selected node that is not its kind's default, its settings set or
  // not: a setting its factory needs that the deployment left out is found there, as `kiln
  // serve` finds it at start (it said "valid" before).
  const std::string test_driver_paths = std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR +
                                        "," + KILN_TEST_PLUGIN_DIR + "/test_driver]";
  auto unset = d.kiln(
      {"config", "check", "--set", test_driver_paths, "--set", "nodes.telemetry_driver=lines"});
  BOOST_TEST(unset.exit_code == 3, unset.out << unset.err);
  BOOST_TEST(contains(unset.err, "plugin_config.test_driver.file names no file of lines"),
             unset.err);
  auto set = d.kiln({"config", "check", "--set", test_driver_paths, "--set",
                     "nodes.telemetry_driver=lines", "--set",
                     "plugin_config.test_driver.file=roast.lines"});
  BOOST_TEST(set.exit_code == 0, set.out << set.err);
  BOOST_REQUIRE(d.kiln({"devices", "add", "lines-1", "--key-out", "lines-1.key"}).exit_code == 0);
  auto rec = d.kiln({"record", "--key", "lines-1.key", "--driver", "lines", "--speed", "0", "--set",
                     std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                         KILN_TEST_PLUGIN_DIR + "/test_driver]",
                     "--set", "plugin_config.test_driver.file=roast.lines"});
  BOOST_TEST(rec.exit_code == 0, rec.out << rec.err);
  std::smatch recorded;
  BOOST_REQUIRE_MESSAGE(
      std::regex_search(rec.out, recorded, std::regex("recorded ([0-9]+) readings")), rec.out);
  // DROP is reading 605 of 720: the recorder stops within a batch or two of it.
  BOOST_TEST(std::stoi(recorded[1]) < 640, rec.out);
  BOOST_TEST(std::stoi(recorded[1]) > 600, rec.out);
  BOOST_TEST(!contains(rec.out, "OFF"), rec.out);
  BOOST_TEST(!contains(rec.err, "readings ended"), rec.err);
  // A capture that ends mid-roast is recorded, and the recorder says the roast asked for never
  // ended (it exited 0 without a word).
  {
    std::ofstream cut(d.dir.path() / "cut.lines");
    cut.precision(17);
    for (std::size_t i = 0; i < 300; ++i) {
      const auto& r = readings[i];
      cut << r.t << "," << r.bt << "," << r.et << "," << r.ror << "," << r.heater << "," << r.fan
          << "," << r.drum << "," << r.state << "\n";
    }
    BOOST_REQUIRE_EQUAL(readings[299].state, 6);  // roasting
  }
  BOOST_REQUIRE(d.kiln({"devices", "add", "lines-2", "--key-out", "lines-2.key"}).exit_code == 0);
  auto cut_short =
      d.kiln({"record", "--key", "lines-2.key", "--driver", "lines", "--speed", "0", "--set",
              test_driver_paths, "--set", "plugin_config.test_driver.file=cut.lines"});
  BOOST_TEST(cut_short.exit_code == 0, cut_short.out << cut_short.err);
  BOOST_TEST(contains(cut_short.out, "recorded 300 readings"), cut_short.out);
  BOOST_TEST(contains(cut_short.err,
                      "the driver's readings ended after 0 of 1 roast(s), in the middle of a "
                      "roast (no DROP after its CHARGE)"),
             cut_short.err);
  // A driver whose gate failed is refused, and the refusal names the flag that selected it.
  auto refused = d.kiln({"record", "--key", "lines-1.key", "--driver", "lines_swapped", "--speed",
                         "0", "--set",
                         std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                             KILN_TEST_PLUGIN_DIR + "/test_driver]",
                         "--set", "plugin_config.test_driver.file=roast.lines"});
  BOOST_TEST(refused.exit_code == 4, refused.out << refused.err);
  BOOST_TEST(contains(refused.err, "selected by command line --driver lines_swapped"), refused.err);
  // A plugin's own parity test: the readings file as the control.
  const json::object kind_config{
      {"replay", "sim"},
      {kiln::nodes::kGateReadingsKey, (d.gates / "telemetry_driver.readings.jsonl").string()}};
  auto control = kiln::testkit::readings_driver(d.gates / "telemetry_driver.readings.jsonl");
  auto itself = kiln::testkit::run_telemetry_driver_parity(control, control, kind_config);
  BOOST_TEST(itself.passed());
  // ... and a candidate whose BT reads 1 °C high fails it.
  {
    std::ifstream in(d.gates / "telemetry_driver.readings.jsonl");
    std::ofstream warm(d.dir.path() / "warm.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto v = json::parse(line).as_object();
      v["bt"] = v.at("bt").to_number<double>() + 1.0;
      warm << json::serialize(v) << "\n";
    }
  }
  auto warm = kiln::testkit::readings_driver(d.dir.path() / "warm.jsonl");
  auto off = kiln::testkit::run_telemetry_driver_parity(control, warm, kind_config);
  BOOST_TEST(!off.passed());
}

// A node whose settings are wrong is a configuration error (exit 3) naming the setting and the
// node, not a plugin failure (exit 5).
BOOST_AUTO_TEST_CASE(a_node_with_wrong_settings_is_a_configuration_error) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  BOOST_REQUIRE(kiln({"devices", "add", "r1", "--key-out", "r1.key"}).exit_code == 0);
  auto no_file =
      kiln({"record", "--key", "r1.key", "--driver", "bullet_r1", "--set",
            "plugin_config.telemetry_bullet_r1.transport=replay", "--set", "gates.enforce=warn"});
  BOOST_TEST(no_file.exit_code == 3, no_file.err);
  BOOST_TEST(contains(no_file.err,
                      "plugin_config.telemetry_bullet_r1.replay names no file (transport: replay) "
                      "(node telemetry_driver/bullet_r1, provider telemetry_bullet_r1)"),
             no_file.err);
  auto bad_transport =
      kiln({"record", "--key", "r1.key", "--driver", "bullet_r1", "--set",
            "plugin_config.telemetry_bullet_r1.transport=serial", "--set", "gates.enforce=warn"});
  BOOST_TEST(bad_transport.exit_code == 3, bad_transport.err);
  BOOST_TEST(contains(bad_transport.err, "use usb, replay or sim"), bad_transport.err);
  auto bad_port =
      kiln({"record", "--key", "r1.key", "--driver", "bullet_r1", "--set",
            "plugin_config.telemetry_bullet_r1.usb_port=left", "--set", "gates.enforce=warn"});
  BOOST_TEST(bad_port.exit_code == 3, bad_port.err);
  BOOST_TEST(contains(bad_port.err, "usb_port is 'left'; give a USB port path like 1-2 or 1-2.3"),
             bad_port.err);
  // A tool's settings too (they were once replaced by the default unseen): config check says so.
  for (const char* phases : {"[150,150]", "[150,150,\"x\",225]", "[150,200,195,225]"}) {
    auto bad_phases = kiln(
        {"config", "check", "--set", std::string("plugin_config.roast.curve_phases=") + phases});
    BOOST_TEST(bad_phases.exit_code == 3, phases << bad_phases.err);
    BOOST_TEST(contains(bad_phases.err,
                        "plugin_config.roast.curve_phases must be four temperatures in °C"),
               bad_phases.err);
    BOOST_TEST(contains(bad_phases.err, "(tool roast."), bad_phases.err);
  }
  BOOST_TEST(
      kiln({"config", "check", "--set", "plugin_config.roast.curve_phases=[140,150,190,220]"})
          .exit_code == 0);
}

// A session's id names its tenant: `kiln report` and `kiln predict` find it without --tenant.
BOOST_AUTO_TEST_CASE(report_finds_a_session_of_another_tenant_by_its_id) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  BOOST_REQUIRE(
      kiln({"devices", "add", "sim-5", "--tenant", "acme", "--key-out", "sim-5.key"}).exit_code ==
      0);
  auto rec = kiln({"record", "--key", "sim-5.key", "--speed", "0", "--roasts", "1"});
  BOOST_REQUIRE_MESSAGE(rec.exit_code == 0, rec.out + rec.err);
  auto list = kiln({"sessions", "list", "--json"});
  const auto sessions = json::parse(list.out).as_array();
  BOOST_REQUIRE_EQUAL(sessions.size(), 1u);
  const std::string id(sessions[0].at("id").as_string());
  BOOST_TEST(contains(id, "@acme"), id);
  // The table: columns as wide as their entries (a long id once ran into the tenant), the
  // roast's length in m:ss.
  auto table = kiln({"sessions", "list"});
  BOOST_TEST(contains(table.out, id + "  acme"), table.out);
  BOOST_TEST(std::regex_search(table.out, std::regex("CHARGE \\(UTC\\) +STATE")), table.out);
  // --since: from a UTC date or time on.
  BOOST_TEST(json::parse(kiln({"sessions", "list", "--since", "2000-01-01", "--json"}).out)
                 .as_array()
                 .size() == 1u);
  BOOST_TEST(json::parse(kiln({"sessions", "list", "--since", "2999-01-01T00:00", "--json"}).out)
                 .as_array()
                 .empty());
  auto bad_since = kiln({"sessions", "list", "--since", "yesterday"});
  BOOST_TEST(bad_since.exit_code == 2);
  BOOST_TEST(contains(bad_since.err, "--since takes a UTC date or time"), bad_since.err);
  BOOST_TEST(std::regex_search(table.out, std::regex(" 20[0-9][0-9]-[01][0-9]-[0-3][0-9] "
                                                     "[0-2][0-9]:[0-5][0-9]  closed ")),
             table.out);
  BOOST_TEST(std::regex_search(table.out, std::regex("closed +[0-9]+:[0-5][0-9] +drop")),
             table.out);
  auto report = kiln({"report", id, "-o", "r.html"});
  BOOST_TEST(report.exit_code == 0, report.out + report.err);
  BOOST_TEST(fs::exists(d.dir.path() / "r.html"));
  // FILE.json: the report's numbers.
  auto numbers = kiln({"report", id, "-o", "r.json"});
  BOOST_TEST(numbers.exit_code == 0, numbers.out + numbers.err);
  std::ifstream numbers_file(d.dir.path() / "r.json");
  std::stringstream numbers_text;
  numbers_text << numbers_file.rdbuf();
  const auto summary = json::parse(numbers_text.str());
  BOOST_TEST(summary.at("format").as_string() == "kiln.roast-report/1");
  BOOST_TEST(summary.at("session").at("id").as_string() == id);
  BOOST_TEST(summary.at("events").at("FCs").at("estimated").as_bool());
  BOOST_TEST(summary.at("qc").at("verdict").is_string());
  auto predicted = kiln({"predict", id});
  BOOST_TEST(predicted.exit_code == 0, predicted.err);
  BOOST_TEST(contains(predicted.out, "is closed (drop): the roast dropped at "), predicted.out);
  // The recorded roast as an Artisan log: CHARGE and DROP as the session has them, the state
  // channel with its device and time lists, FCs (estimated) not written as a mark; the batch's
  // weights, the roaster's settings as Artisan's controls, when it was roasted.
  BOOST_REQUIRE(kiln({"sessions", "weigh", id, "--green", "400", "--roasted", "340", "--no-report"})
                    .exit_code == 0);
  auto exported = kiln({"sessions", "export", id, "-o", "roast.alog"});
  BOOST_TEST(exported.exit_code == 0, exported.out + exported.err);
  BOOST_TEST(contains(exported.out, "FCs was estimated from the phase temperature"), exported.out);
  auto marked = kiln({"analyze", "roast.alog", "--json"});
  BOOST_REQUIRE_MESSAGE(marked.exit_code == 0, marked.err);
  const auto back = json::parse(marked.out);
  BOOST_TEST(back.at("events").at("FCs").is_null());
  BOOST_TEST(std::abs(back.at("events").at("DROP").at("time").as_double() -
                      sessions[0].at("duration_s").as_double()) < 1.0);
  BOOST_TEST(back.at("event_sources").at("CHARGE").as_string() == "marked");
  auto detected = kiln({"analyze", "roast.alog", "--detect", "--json"});
  BOOST_TEST(json::parse(detected.out).at("event_sources").at("CHARGE").as_string() ==
             "roaster state");  // the state channel came through
  std::ifstream alog_file(d.dir.path() / "roast.alog");
  std::stringstream alog_text;
  alog_text << alog_file.rdbuf();
  BOOST_TEST(contains(alog_text.str(), "'extradevices': [87]"), alog_text.str().substr(0, 300));
  BOOST_TEST(contains(alog_text.str(), "'extratimex': [["));
  BOOST_TEST(contains(alog_text.str(), "'weight': [400.0, 340.0, 'g']"));
  BOOST_TEST(contains(alog_text.str(), "'etypes': ['Heater', 'Fan', 'Drum', "));
  BOOST_TEST(contains(alog_text.str(), "'specialeventsvalue': ["));
  BOOST_TEST(
      contains(alog_text.str(), "'roastingnotes': 'kiln session " + id + " (times in UTC)'"));
  BOOST_TEST(std::regex_search(
      alog_text.str(), std::regex("'title': 'sim-5 20[0-9-]{8} [0-2][0-9]:[0-5][0-9] UTC'")));
  BOOST_TEST(
      std::regex_search(alog_text.str(),
                        std::regex("'roastisodate': '20[0-9-]{8}', 'roasttime': '[0-9:]{8}'")),
      alog_text.str().substr(alog_text.str().find("'roast")));
  BOOST_TEST(back.at("weight").at("loss").as_double() == 15.0, marked.out);
  // An explicit --tenant still wins (and there the session is not).
  auto other = kiln({"report", id, "-o", "r2.html", "--tenant", "default"});
  BOOST_TEST(other.exit_code == 1);
  BOOST_TEST(contains(other.err, "in tenant default"), other.err);
}

// A profile's life from the CLI: a device pinned to a version (one that is none refused), an
// assigned profile kept from the archive, cleared, archived (and said so by an empty list),
// refused while archived, restored.
BOOST_AUTO_TEST_CASE(a_profile_is_pinned_cleared_archived_and_restored) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  BOOST_REQUIRE(kiln({"devices", "add", "sim-6", "--key-out", "sim-6.key"}).exit_code == 0);
  const std::string alog =
      std::string(KILN_SOURCE_DIR) + "/tests/fixtures/artisan-alog/26-04-12_sidamo_no42.alog";
  BOOST_REQUIRE(kiln({"profiles", "import", alog, "--name", "sidamo"}).exit_code == 0);
  auto expect = [&](std::vector<std::string> args, int code, const std::string& said) {
    auto r = kiln(args);
    BOOST_TEST(r.exit_code == code, args[0] << " " << args[1] << ": " << r.out << r.err);
    BOOST_TEST(contains(r.out + r.err, said), r.out << r.err);
  };
  expect({"devices", "profile", "sim-6", "sidamo@1"}, 0,
         "device sim-6 roasts to profile sidamo@1 (tenant default)");
  expect({"devices", "profile", "sim-6", "sidamo@9"}, 1, "profile 'sidamo' has no version 9");
  expect({"profiles", "archive", "sidamo"}, 1, "profile 'sidamo' is assigned to device sim-6");
  expect({"devices", "profile", "sim-6", "--clear"}, 0,
         "device sim-6 has no profile (tenant default)");
  expect({"profiles", "archive", "sidamo"}, 0, "profile sidamo is archived");
  expect({"profiles", "list"}, 0,
         "no active profiles; 1 archived (kiln profiles list --all; kiln profiles restore NAME)");
  expect({"profiles", "list", "--all"}, 0, "sidamo");
  expect({"devices", "profile", "sim-6", "sidamo"}, 1, "is archived; restore it first");
  expect({"profiles", "restore", "sidamo"}, 0, "profile sidamo is active");
  expect({"devices", "profile", "sim-6", "sidamo"}, 0, "device sim-6 roasts to profile sidamo");
}

// While a roast is under way, predict aims at the DTR of the profile its device roasts to (the
// profile's target, not the default 20 %).
BOOST_AUTO_TEST_CASE(predict_aims_at_the_profiles_dtr) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  BOOST_REQUIRE(kiln({"devices", "add", "sim-6", "--key-out", "sim-6.key"}).exit_code == 0);
  const std::string alog =
      std::string(KILN_SOURCE_DIR) + "/tests/fixtures/artisan-alog/26-04-12_sidamo_no42.alog";
  auto imported = kiln({"profiles", "import", alog, "--name", "sidamo"});
  BOOST_REQUIRE(imported.exit_code == 0);
  // The log's phases (DRY END at 18 °C) would end a session's drying at TP: the import says so
  // and how to set them; --phases does.
  BOOST_TEST(contains(imported.out, "  note: its DRY END temperature (18.0 °C"), imported.out);
  BOOST_TEST(contains(imported.out, "import it with --phases"), imported.out);
  // The suggestion keeps the log's FCs temperature (187 °C), where estimates of FCs aim.
  BOOST_TEST(contains(imported.out,
                      "e.g. 150,150,187,225 (°C: DRY END at 150, the log's FCs temperature kept)"),
             imported.out);
  auto phased =
      kiln({"profiles", "import", alog, "--name", "phased", "--phases", "150,150,195,225"});
  BOOST_TEST(phased.exit_code == 0, phased.err);
  BOOST_TEST(contains(phased.out, "saved profile phased version 1"), phased.out);
  BOOST_TEST(!contains(phased.out, "note:"), phased.out);
  BOOST_TEST(contains(kiln({"profiles", "show", "phased"}).out,
                      "  phases:   DRY END at 150.0 °C, FCs expected at 195.0 °C  [Artisan's "
                      "phases: "));
  // A log cut short is input to fix: invalid_input, exit 2, for the import as for analyze (both
  // exited 1).
  {
    std::ifstream in(alog);
    std::string text(3000, '\0');
    in.read(text.data(), 3000);
    std::ofstream(d.dir.path() / "cut.alog") << text;
  }
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"profiles", "import", "cut.alog", "--name", "cut"}, {"analyze", "cut.alog"}}) {
    auto cut = kiln(args);
    BOOST_TEST(cut.exit_code == 2, args[0] << ": " << cut.err);
    BOOST_TEST(contains(cut.err, "invalid_input: the .alog is not a Python literal"), cut.err);
  }
  auto three = kiln({"profiles", "import", alog, "--name", "phased", "--phases", "150,195,225"});
  BOOST_TEST(three.exit_code == 2);
  BOOST_TEST(contains(three.err, "--phases '150,195,225' is not four temperatures A,B,C,D"),
             three.err);
  BOOST_REQUIRE(kiln({"devices", "profile", "sim-6", "sidamo"}).exit_code == 0);
  // The device list says what each roaster roasts to.
  auto devices = kiln({"devices", "list"});
  BOOST_TEST(std::regex_search(devices.out, std::regex("PROFILE\n[^\n]* sim-6 [^\n]* sidamo\n")),
             devices.out);
  auto shown = kiln({"profiles", "show", "sidamo", "--json"});
  const auto profile = json::parse(shown.out);
  const auto& targets = profile.as_object().contains("targets")
                            ? profile.at("targets")
                            : profile.at("profile").at("targets");
  const double dtr = targets.at("dtr").at("target").to_number<double>();
  BOOST_TEST(dtr != 20.0);
  // Eight minutes of device time: CHARGE, then the roast under way (DROP comes later).
  auto rec = kiln({"record", "--key", "sim-6.key", "--speed", "0", "--duration", "480"});
  BOOST_REQUIRE_MESSAGE(rec.exit_code == 0, rec.out + rec.err);
  const auto sessions = json::parse(kiln({"sessions", "list", "--json"}).out).as_array();
  BOOST_REQUIRE_EQUAL(sessions.size(), 1u);
  BOOST_REQUIRE(sessions[0].at("state").as_string() == "open");
  auto predicted = kiln({"predict", std::string(sessions[0].at("id").as_string()), "--json"});
  BOOST_REQUIRE_MESSAGE(predicted.exit_code == 0, predicted.err);
  BOOST_TEST(json::parse(predicted.out).at("dtr_target").to_number<double>() == dtr);
  // Its report is a snapshot of a roast under way, not a finished roast's.
  auto report = kiln({"report", std::string(sessions[0].at("id").as_string()), "-o", "open.html"});
  BOOST_TEST(report.exit_code == 0, report.err);
  BOOST_TEST(contains(report.out, "is still under way; this is its report so far."), report.out);
  BOOST_TEST(!contains(report.out, "is done"), report.out);
  auto text = kiln({"predict", std::string(sessions[0].at("id").as_string())});
  BOOST_TEST(text.exit_code == 0, text.err);
  // Eight minutes in, this profile's FCs temperature is behind: when it came, and the DROP its
  // DTR aims at, in words (no status codes).
  // FCs not marked: BT at its temperature is an estimate, and the roaster is told to mark it.
  BOOST_TEST(std::regex_search(text.out,
                               std::regex("\nFCs  [0-9]+:[0-5][0-9]  estimated: BT reached the FCs "
                                          "temperature \\([0-9.]+ °C\\); mark first crack when "
                                          "you hear it \\(kiln sessions mark SESSION FCs\\)\n"
                                          "DROP [0-9]+:[0-5][0-9]  for DTR [0-9.]+ %\n")),
             text.out);
  BOOST_TEST(json::parse(predicted.out).at("fcs").at("marked") == false);
  BOOST_TEST(!contains(text.out, "fcs_reached"), text.out);
  // The roaster's newest session by its device, the same prediction; the session's view says how
  // to follow it live.
  const std::string id(sessions[0].at("id").as_string());
  auto by_device = kiln({"predict", "--device", "sim-6"});
  BOOST_TEST(by_device.exit_code == 0, by_device.err);
  BOOST_TEST(by_device.out == text.out);
  BOOST_TEST(contains(kiln({"sessions", "show", id}).out,
                      "next:     kiln predict " + id + " --follow (when FCs and DROP are due"));
  // A recording in real time says how to mark first crack and follow the prediction.
  auto live = kiln({"record", "--key", "sim-6.key", "--speed", "1", "--duration", "2"});
  BOOST_TEST(live.exit_code == 0, live.err);
  BOOST_TEST(contains(live.out,
                      "at first crack: kiln sessions mark --device sim-6 FCs\n"
                      "when FCs and DROP are due: kiln predict --device sim-6 --follow\n"),
             live.out);
}

// Profile names are case-sensitive, and a roaster does not see the difference: a name that
// differs from a stored one only in case is refused on save and suggested on lookup.
BOOST_AUTO_TEST_CASE(profile_names_differing_only_in_case_are_refused_and_suggested) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  BOOST_REQUIRE(kiln({"devices", "add", "sim-8", "--key-out", "sim-8.key"}).exit_code == 0);
  const std::string alog =
      std::string(KILN_SOURCE_DIR) + "/tests/fixtures/artisan-alog/26-02-01_1812_Jigesa_no2.alog";
  BOOST_REQUIRE(kiln({"profiles", "import", alog, "--name", "Jigesa"}).exit_code == 0);
  // Imported twice: nothing new to save.
  auto again = kiln({"profiles", "import", alog, "--name", "Jigesa"});
  BOOST_TEST(again.exit_code == 0, again.err);
  BOOST_TEST(
      contains(again.out,
               "unchanged: profile Jigesa version 1 (Aillio Bullet R1 IBTS batch 2, Sun Feb 1 "
               "2026) has the content of "),
      again.out);
  auto twin = kiln({"profiles", "import", alog, "--name", "JIGESA"});
  BOOST_TEST(twin.exit_code == 1, twin.out);
  BOOST_TEST(contains(twin.err, "profile 'JIGESA' differs from the existing 'Jigesa' only in case"),
             twin.err);
  // Version 2, titled over two lines (Artisan's titles may be): the listing keeps one row a line.
  auto v2 = kiln({"profiles", "import", alog, "--name", "Jigesa", "--title", "Jigesa\nlot 2"});
  BOOST_TEST(v2.exit_code == 0, v2.err);
  BOOST_TEST(contains(v2.out, "(Jigesa lot 2)"), v2.out);
  auto listed = kiln({"profiles", "list"});
  BOOST_TEST(std::count(listed.out.begin(), listed.out.end(), '\n') == 2, listed.out);
  BOOST_TEST(std::regex_search(listed.out, std::regex("\nJigesa +v2 +Jigesa lot 2 +20")),
             listed.out);
  auto devices = kiln({"devices", "list"});
  BOOST_TEST(std::regex_search(devices.out, std::regex("^KEY +TENANT +DEVICE +STATE")),
             devices.out);
  // An unknown device is refused, assigning or clearing.
  auto ghost = kiln({"devices", "profile", "ghost", "--clear"});
  BOOST_TEST(ghost.exit_code == 1);
  BOOST_TEST(contains(ghost.err, "no device 'ghost' in tenant default"), ghost.err);
  auto assign = kiln({"devices", "profile", "sim-8", "jigesa"});
  BOOST_TEST(assign.exit_code == 1);
  BOOST_TEST(contains(assign.err, "no profile 'jigesa' in tenant default (did you mean 'Jigesa'?"),
             assign.err);
  auto show = kiln({"profiles", "show", "jigesa"});
  BOOST_TEST(contains(show.err, "did you mean 'Jigesa'?"), show.err);
  auto version = kiln({"profiles", "show", "Jigesa@9"});
  BOOST_TEST(contains(version.err, "profile 'Jigesa' has no version 9"), version.err);
  auto unknown = kiln({"profiles", "versions", "kenya"});
  BOOST_TEST(
      contains(unknown.err,
               "no profile 'kenya' in tenant default (GET /v1/profiles or `kiln profiles list"),
      unknown.err);
}

// A refusal that is about the key (here: revoked) stops the recorder at the first batch, with the
// reason and what to do, instead of sending a whole roast to be refused batch by batch.
BOOST_AUTO_TEST_CASE(record_stops_when_the_server_refuses_its_key) {
  Deployment d;
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  BOOST_REQUIRE(kiln({"devices", "add", "sim-3", "--key-out", "sim-3.key"}).exit_code == 0);
  // A key every user may read is refused before anything is sent (ssh refuses one too).
  fs::permissions(d.dir.path() / "sim-3.key", fs::perms::others_read, fs::perm_options::add);
  auto loose = kiln({"record", "--key", "sim-3.key", "--speed", "0"});
  BOOST_TEST(loose.exit_code != 0);
  BOOST_TEST(contains(loose.err, "may be read or written by every user of this machine"),
             loose.err);
  BOOST_TEST(contains(loose.err, "chmod 600"), loose.err);
  fs::permissions(d.dir.path() / "sim-3.key", fs::perms::others_read, fs::perm_options::remove);
  BOOST_REQUIRE(kiln({"devices", "revoke", "sim-3"}).exit_code == 0);
  auto rec = kiln({"record", "--key", "sim-3.key", "--speed", "0"});
  BOOST_TEST(rec.exit_code == 1, rec.out + rec.err);
  BOOST_TEST(contains(rec.err, "batch 1 refused: revoked_key: device key"), rec.err);
  BOOST_TEST(contains(rec.err, "would be refused the same way; stopping"), rec.err);
  BOOST_TEST(contains(rec.out, "sent 0, refused 1, waiting in the spool 0"), rec.out);
  // So does a batch larger than the deployment takes: the next would be as large.
  BOOST_REQUIRE(kiln({"devices", "add", "sim-4", "--key-out", "sim-4.key"}).exit_code == 0);
  auto big = kiln(
      {"record", "--key", "sim-4.key", "--speed", "0", "--set", "telemetry.max_batch_samples=5"});
  BOOST_TEST(big.exit_code == 1, big.out + big.err);
  BOOST_TEST(contains(big.err, "batch 1 refused: oversized_batch"), big.err);
  BOOST_TEST(contains(big.err,
                      "every batch of 10 readings would be refused the same way; "
                      "stopping (--batch N sends fewer readings a batch)"),
             big.err);
  BOOST_TEST(contains(big.out, "sent 0, refused 1, waiting in the spool 0"), big.out);
}

// A restore after a crash: the crashed server's -wal and -shm are still beside the database, and
// a backup copied over the file by hand had SQLite replay that -wal onto it (a damaged mix whose
// chain still verified). `kiln db restore` refuses while a server runs, sets the database aside
// whole and puts the backup in place.
BOOST_AUTO_TEST_CASE(a_backup_restores_over_a_crashed_servers_files) {
  Deployment d;
  const fs::path db = d.dir.path() / "var" / "kiln.db";
  auto key_names = [&] {
    std::vector<std::string> names;
    const auto listed = json::parse(d.kiln({"keys", "list", "--json"}).out);
    for (const auto& k : listed.as_array()) names.emplace_back(k.at("name").as_string());
    return names;
  };
  BOOST_REQUIRE_EQUAL(
      d.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "before"})
          .exit_code,
      0);
  const auto backup = (d.dir.path() / "backups" / "kiln-1.db").string();
  auto backed = d.kiln({"db", "backup", backup});
  BOOST_REQUIRE_MESSAGE(backed.exit_code == 0, backed.err);
  BOOST_TEST(contains(backed.out, "restore it: kiln db restore " + backup), backed.out);
  // The backup holds what the database holds: not world-readable.
  BOOST_TEST(((fs::status(backup).permissions() & fs::perms::others_read) == fs::perms::none));

  {
    Child server({kKiln, "serve"}, d.env(), d.dir.path());
    BOOST_REQUIRE(server.wait_for_stderr("ready:", 20s));
    for (const char* name : {"after-1", "after-2"})
      BOOST_REQUIRE_EQUAL(
          d.kiln({"keys", "create", "--tenant", "acme", "--role", "viewer", "--name", name})
              .exit_code,
          0);
    auto while_serving = d.kiln({"db", "restore", backup});
    BOOST_TEST(while_serving.exit_code == 1, while_serving.out << while_serving.err);
    BOOST_TEST(contains(while_serving.err, "is using the database"), while_serving.err);
    BOOST_TEST(contains(while_serving.err, "stop it before restoring"), while_serving.err);
    server.signal(SIGKILL);
    server.wait(10s);
  }
  BOOST_TEST(fs::exists(db.string() + "-wal"));  // what a crash leaves

  // A file that is no database is refused before anything is moved.
  const auto junk = d.dir.path() / "junk.db";
  std::ofstream(junk) << "not a database";
  auto refused = d.kiln({"db", "restore", junk.string()});
  BOOST_TEST(refused.exit_code != 0);
  BOOST_TEST(fs::exists(db.string() + "-wal"));
  // So is a newer kiln's backup (a schema this kiln does not know), which it could not serve.
  const auto newer = d.dir.path() / "newer.db";
  fs::copy_file(backup, newer);
  {
    storage::Connection c(newer, storage::Connection::Mode::kReadWrite);
    c.exec(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', "
        "'2027-01-01T00:00:00.000Z')");
  }
  auto too_new = d.kiln({"db", "restore", newer.string()});
  BOOST_TEST(too_new.exit_code == 1);
  BOOST_TEST(contains(too_new.err, "has schema version 999 (a newer kiln's)"), too_new.err);
  BOOST_TEST(fs::exists(db.string() + "-wal"));  // nothing moved
  // A server on it stops with exit 6, which its systemd unit does not restart.
  {
    bool became_ready = true;
    auto served = serve_until_ready(d, {{"KILN_STORAGE__PATH", newer.string()}}, &became_ready);
    BOOST_TEST(!became_ready);
    BOOST_TEST(served.exit_code == 6, served.err);
    BOOST_TEST(contains(served.err, "knows only up to"), served.err);
  }

  auto restored = d.kiln({"db", "restore", backup});
  BOOST_REQUIRE_MESSAGE(restored.exit_code == 0, restored.out << restored.err);
  BOOST_TEST(contains(restored.out, "chain intact"), restored.out);
  BOOST_TEST(contains(restored.out, "the database before is kept at var/kiln.db.before-restore-"),
             restored.out);
  BOOST_TEST(!fs::exists(db.string() + "-wal"));
  BOOST_TEST(((fs::status(db).permissions() & fs::perms::others_read) == fs::perms::none));
  // The backup's keys, none of the crashed server's, and a whole file.
  const auto names = key_names();
  BOOST_TEST((names == std::vector<std::string>{"before"}), names.size());
  auto verified = d.kiln({"ledger", "verify"});
  BOOST_TEST(verified.exit_code == 0, verified.out << verified.err);
  BOOST_TEST(d.kiln({"ledger", "replay"}).exit_code == 0);
  // Nothing was deleted: the crashed database and its -wal are kept, with the later keys.
  bool kept_wal = false;
  for (const auto& f : fs::directory_iterator(db.parent_path()))
    kept_wal |= f.path().filename().string().find(".before-restore-") != std::string::npos &&
                f.path().string().ends_with("-wal");
  BOOST_TEST(kept_wal);
  // The next server says the one before was killed; after a clean stop, the one after does not.
  for (const bool after_kill : {true, false}) {
    Child server({kKiln, "serve"}, d.env(), d.dir.path());
    BOOST_REQUIRE(server.wait_for_stderr("ready:", 20s));
    BOOST_TEST(contains(server.stderr_so_far(), "did not stop cleanly") == after_kill,
               server.stderr_so_far());
    server.signal(SIGTERM);
    BOOST_TEST(server.wait(20s).exit_code == 0);
  }

  // A backup cut off leaves FILE.partial, never FILE: the next run replaces it.
  const auto second = (d.dir.path() / "backups" / "kiln-2.db").string();
  std::ofstream(second + ".partial") << "half a copy";
  auto again = d.kiln({"db", "backup", second});
  BOOST_REQUIRE_MESSAGE(again.exit_code == 0, again.err);
  BOOST_TEST(contains(again.out, "replacing " + second + ".partial, which a backup cut off left"),
             again.out);
  BOOST_TEST(!fs::exists(second + ".partial"));
  BOOST_TEST(d.kiln({"ledger", "verify", "--set", "storage.path=" + second}).exit_code == 0);
  // A second backup to a FILE one is writing is refused: replacing its .partial, it would have
  // the first name a half-written copy.
  {
    const auto third = (d.dir.path() / "backups" / "kiln-3.db").string();
    const int fd = ::open((third + ".partial").c_str(), O_CREAT | O_RDWR, 0640);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::flock(fd, LOCK_EX) == 0);  // as a running backup holds it
    auto busy = d.kiln({"db", "backup", third});
    BOOST_TEST(busy.exit_code == 1);
    BOOST_TEST(contains(busy.err, "another kiln db backup is writing " + third), busy.err);
    BOOST_TEST(!fs::exists(third));
    ::close(fd);
  }
  // An empty file is no backup: said so, nothing moved.
  const auto empty = d.dir.path() / "empty.db";
  std::ofstream{empty};
  auto nothing = d.kiln({"db", "restore", empty.string()});
  BOOST_TEST(nothing.exit_code == 1);
  BOOST_TEST(contains(nothing.err, "is not a kiln database (it has no ledger)"), nothing.err);
  BOOST_TEST(fs::exists(db));
  // A restore cut off after it set the database aside and before the copy was in place: no
  // command makes an empty database there (a restarted service would serve nothing); each says
  // what happened, and the restore run again finishes.
  const auto aside = db.string() + ".before-restore-2099-01-01T00-00-00.000Z";
  fs::rename(db, aside);
  fs::copy_file(second, db.string() + ".restoring");
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"db", "status"}, {"keys", "list"}}) {
    auto cut_off = d.kiln(command);
    BOOST_TEST(cut_off.exit_code == 6, command[0] << ": " << cut_off.err);
    BOOST_TEST(contains(cut_off.err,
                        "a `kiln db restore` there was cut off after it set the "
                        "database aside at var/kiln.db.before-restore-2099-01-01T"),
               cut_off.err);
    BOOST_TEST(contains(cut_off.err, "Run `kiln db restore BACKUP` again"), cut_off.err);
  }
  {
    bool became_ready = true;
    auto served = serve_until_ready(d, {}, &became_ready);
    BOOST_TEST(!became_ready);
    BOOST_TEST(served.exit_code == 6, served.err);
  }
  BOOST_TEST(!fs::exists(db));
  // The copy it left is not a backup to restore (it would be replaced while read).
  auto itself = d.kiln({"db", "restore", db.string() + ".restoring"});
  BOOST_TEST(itself.exit_code == 1);
  BOOST_TEST(contains(itself.err, "is the copy a restore cut off left"), itself.err);
  auto finished = d.kiln({"db", "restore", second});
  BOOST_REQUIRE_MESSAGE(finished.exit_code == 0, finished.out << finished.err);
  BOOST_TEST(!fs::exists(db.string() + ".restoring"));
  BOOST_TEST(d.kiln({"ledger", "verify"}).exit_code == 0);
  // Set-aside files are kept after every restore: alone they say nothing of a restore cut off.
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(db.string() + suffix);
  auto gone = d.kiln({"db", "status"});
  BOOST_TEST(gone.exit_code == 1, gone.err);
  BOOST_TEST(contains(gone.err, "no database at"), gone.err);
  BOOST_TEST(!contains(gone.err, "cut off"), gone.err);
}

// The tts_torch plugin links no LibTorch: it opens its engine library (support/ beside it) when
// the node is first built, so commands that do not speak do not load LibTorch. Without that
// library the plugin still loads, and building the node names the missing file.
BOOST_AUTO_TEST_CASE(tts_torch_opens_its_engine_when_the_node_is_built) {
  Deployment d;
  fs::copy_file(fs::path(KILN_PLUGIN_DIR) / "kiln_tts_torch.so", d.plugins / "kiln_tts_torch.so");
  auto list = d.kiln({"plugins", "list"});
  BOOST_TEST(list.exit_code == 0, list.err);
  BOOST_TEST(contains(list.out, "tts_torch"), list.out);
  const std::vector<std::string> speak{
      "tool",
      "invoke",
      "tts.synthesize",
      "--input",
      R"({"text": "Charge."})",
      "--set",
      std::string("plugin_config.tts_torch.voices_dirs=[") + KILN_PLUGIN_DIR + "/../voices]"};
  auto without = d.kiln(speak);
  BOOST_TEST(without.exit_code != 0);
  BOOST_TEST(contains(without.err, "support/kiln_tts_torch_engine.so"), without.err);
  BOOST_TEST(contains(without.err, "reinstall kiln"), without.err);
  fs::create_directories(d.plugins / "support");
  fs::copy_file(fs::path(KILN_PLUGIN_DIR) / "support" / "kiln_tts_torch_engine.so",
                d.plugins / "support" / "kiln_tts_torch_engine.so");
  auto with = d.kiln(speak);
  BOOST_TEST(with.exit_code == 0, with.err);
  BOOST_TEST(contains(with.out, "\"sample_rate\""), with.out);
}

// After an upgrade, a command of the new kiln would migrate the database under the old kiln's
// server still running on it: refused, naming the server. With no server, it migrates and says
// so.
BOOST_AUTO_TEST_CASE(a_command_does_not_migrate_the_database_under_a_running_server) {
  Deployment d;
  const auto db = d.dir.path() / "var" / "kiln.db";
  fs::create_directories(db.parent_path());
  {
    std::vector<storage::Migration> older;
    for (const auto& m : storage::kernel_migrations())
      if (m.version < storage::kernel_migrations().back().version) older.push_back(m);
    storage::Connection c(db, storage::Connection::Mode::kReadWrite);
    storage::migrate(c, older);
  }
  const std::string old_version = std::to_string(storage::kernel_migrations().back().version - 1);
  // An older server holds the serve lock, as `kiln serve` does.
  const auto lock_path = db.string() + ".serve.lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  BOOST_REQUIRE(::pwrite(fd, "424242\n", 7, 0) == 7);
  auto refused = d.kiln({"sessions", "list"});
  BOOST_TEST(refused.exit_code == 1);
  BOOST_TEST(contains(refused.err, "is at schema version " + old_version +
                                       " and a kiln serve (pid 424242) runs on it"),
             refused.err);
  BOOST_TEST(contains(refused.err, "Restart the server with this kiln first"), refused.err);
  {
    storage::Connection c(db, storage::Connection::Mode::kReadOnly);
    BOOST_TEST(storage::migration_status(c).version == std::stoi(old_version));  // untouched
  }
  ::close(fd);  // the server stopped
  auto migrated = d.kiln({"sessions", "list"});
  BOOST_TEST(migrated.exit_code == 0, migrated.err);
  BOOST_TEST(contains(migrated.err, "migrating schema version " + old_version + " to "),
             migrated.err);
}

// A node that never returns from a check fails its gate on that check, recorded, instead of
// hanging `kiln gate run` with it.
BOOST_AUTO_TEST_CASE(a_node_that_hangs_fails_its_gate) {
  Deployment d;
  const auto started = std::chrono::steady_clock::now();
  auto hung =
      d.kiln({"gate", "run", "tts_engine/hanging", "--set", "gates.check_timeout_s=1", "--set",
              std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," + KILN_TEST_PLUGIN_DIR +
                  "/test_tts]"});
  BOOST_TEST(hung.exit_code == 1, hung.out << hung.err);
  auto hung_json = d.kiln({"gate", "run", "tts_engine/hanging", "--json", "--set",
                           "gates.check_timeout_s=1", "--set",
                           std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                               KILN_TEST_PLUGIN_DIR + "/test_tts]"});
  BOOST_TEST(hung_json.exit_code == 1);
  BOOST_TEST(json::parse(hung_json.out).at("result") == "FAIL", hung_json.out);
  BOOST_TEST((std::chrono::steady_clock::now() - started < 60s));
  BOOST_TEST(contains(hung.err,
                      "FAIL: contract check 'empty text is invalid_input' did not "
                      "finish within 1 s (gates.check_timeout_s)"),
             hung.err);
  auto status = d.kiln({"gate", "status", "--json", "--set",
                        std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                            KILN_TEST_PLUGIN_DIR + "/test_tts]"});
  const auto nodes = json::parse(status.out).at("nodes").as_array();
  const auto it = std::find_if(nodes.begin(), nodes.end(),
                               [](const json::value& n) { return n.at("node") == "hanging"; });
  BOOST_REQUIRE(it != nodes.end());
  BOOST_TEST(it->at("gate") == "failed", status.out);
  BOOST_TEST(d.kiln({"ledger", "verify"}).exit_code == 0);
  BOOST_TEST(
      contains(d.kiln({"ledger", "export", "--stream", "gates"}).out, "\"result\":\"FAIL\""));
  // A node that never finishes closing is failed as well, named where it stands.
  auto stuck = d.kiln({"gate", "run", "tts_engine/stuck_on_close", "--set",
                       "gates.check_timeout_s=1", "--set",
                       std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "," +
                           KILN_TEST_PLUGIN_DIR + "/test_tts]"});
  BOOST_TEST(stuck.exit_code == 1, stuck.out << stuck.err);
  BOOST_TEST(contains(stuck.err, "destroying the node tts_engine/stuck_on_close"), stuck.err);
  BOOST_TEST(contains(stuck.err, "did not finish within 1 s"), stuck.err);
}

// A deployment an older kiln wrote — tests/fixtures/upgrade: schema version 7, made by that
// kiln itself (make-fixture.sh; README.md there says which commit): API and device keys, a revoked
// one of each, a profile, a recorded roast whose report mission waits for an approver, a done
// mission and one held for review. This kiln opens it with everything in it: the ledger's events
// and head as they were, the sessions, missions, keys and devices as the older kiln listed them,
// a replay that matches; the held report mission, approved now, finishes (its session step's
// output has no `reference`: the template's `?` lets it through); the session's id in the older
// form (no '@') is found without --tenant; and the server takes the older keys.
BOOST_AUTO_TEST_CASE(a_database_from_an_older_kiln_upgrades_with_everything_in_it) {
  Deployment d;
  const fs::path fixture = fs::path(KILN_SOURCE_DIR) / "tests/fixtures/upgrade";
  fs::create_directories(d.dir.path() / "var");
  fs::copy_file(fixture / "kiln.db", d.dir.path() / "var" / "kiln.db");
  fs::copy_file(fixture / "sim-u.key", d.dir.path() / "sim-u.key");
  // As `kiln devices add` wrote it (a clone does not keep the mode; the recorder refuses a key
  // others may read).
  fs::permissions(d.dir.path() / "sim-u.key", fs::perms::owner_read | fs::perms::owner_write,
                  fs::perm_options::replace);
  const json::value expected = [&] {
    std::ifstream in(fixture / "expected.json");
    std::stringstream text;
    text << in.rdbuf();
    return json::parse(text.str());
  }();
  auto kiln = [&](std::vector<std::string> args) { return d.kiln_all_plugins(std::move(args)); };
  auto listed = [&](std::vector<std::string> args) {
    auto r = kiln(std::move(args));
    BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.out << r.err);
    return json::parse(r.out).as_array();
  };
  auto status = kiln({"db", "status"});
  BOOST_TEST(contains(status.out, "schema version: 7 (this kiln: "), status.out);
  BOOST_TEST(contains(status.out, "pending migrations apply at the next start"), status.out);

  // The ledger: intact, and its event at the older kiln's head is that head.
  const std::int64_t events = expected.at("ledger").at("checked").as_int64();
  auto verified = kiln({"ledger", "verify"});
  BOOST_TEST(verified.exit_code == 0, verified.out << verified.err);
  BOOST_TEST(contains(verified.out, "from before migration 8 by digest only"), verified.out);
  auto head = kiln({"ledger", "export", "--since", std::to_string(events - 1)});
  BOOST_REQUIRE(head.exit_code == 0);
  const auto at_head = json::parse(head.out.substr(0, head.out.find('\n')));
  BOOST_TEST(at_head.at("seq").as_int64() == events);
  BOOST_TEST(at_head.at("hash") == expected.at("ledger").at("head_hash"));

  // What the older kiln listed, as this one lists it.
  auto same = [](const json::array& now, const json::value& then, const char* key,
                 std::vector<const char*> fields) {
    BOOST_REQUIRE(!then.as_array().empty());
    for (const auto& old : then.as_array()) {
      const auto it = std::find_if(now.begin(), now.end(),
                                   [&](const json::value& x) { return x.at(key) == old.at(key); });
      BOOST_REQUIRE_MESSAGE(it != now.end(), "lost: " << json::serialize(old));
      for (const char* f : fields)
        BOOST_TEST(it->at(f) == old.at(f), key << " " << old.at(key) << " " << f << ": now "
                                               << it->at(f) << ", was " << old.at(f));
    }
  };
  same(listed({"sessions", "list", "--tenant", "acme", "--json"}), expected.at("sessions"), "id",
       {"device", "state", "charge_t", "close_reason", "mission_id", "profile"});
  same(listed({"mission", "list", "--json"}), expected.at("missions"), "id",
       {"tenant", "template", "state"});
  same(listed({"keys", "list", "--json"}), expected.at("keys"), "id",
       {"tenant", "role", "name", "created_at", "revoked_at"});
  same(listed({"devices", "list", "--tenant", "acme", "--json"}), expected.at("devices"), "kid",
       {"device", "status", "revoked_at"});
  auto replay = kiln({"ledger", "replay"});
  BOOST_TEST(replay.exit_code == 0, replay.out << replay.err);
  BOOST_TEST(contains(replay.out, "replay matches"), replay.out);

  // The roast: its report made now from the older rows, found by its older id alone.
  const auto& session = expected.at("sessions").at(0);
  const std::string id(session.at("id").as_string());
  BOOST_REQUIRE(id.find('@') == std::string::npos);  // the older form, tenant after a '-'
  auto report = kiln({"report", id, "-o", "old.html"});
  BOOST_TEST(report.exit_code == 0, report.out << report.err);
  BOOST_TEST(contains(report.out, "The roast on sim-u, profile sidamo, is done."), report.out);
  // Its report mission, held for an approver by the older kiln, finishes once approved.
  const std::string mission(session.at("mission_id").as_string());
  auto approved = kiln({"mission", "approve", mission, "--reason", "after the upgrade", "--wait"});
  BOOST_TEST(approved.exit_code == 0, approved.out << approved.err);
  const auto shown = json::parse(kiln({"mission", "show", mission, "--json"}).out);
  BOOST_TEST(shown.at("state").as_string() == "DONE", json::serialize(shown));

  // The server: the older viewer key reads the older session; the older device key signs a new
  // recording that is stored.
  Child served(
      {kKiln, "serve", "--set", std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "]"},
      d.env(), d.dir.path());
  BOOST_REQUIRE_MESSAGE(served.wait_for_stderr("ready:", 30s), served.stderr_so_far());
  std::smatch port;
  const std::string log = served.stderr_so_far();
  BOOST_REQUIRE(std::regex_search(log, port, std::regex("listening on http://127.0.0.1:([0-9]+)")));
  const std::string url = "http://127.0.0.1:" + port[1].str();
  const std::string viewer(expected.at("viewer_key").as_string());
  auto sessions = kiln::http::Client(url).request("GET", "/v1/sessions", "",
                                                  {{"Authorization", "Bearer " + viewer}});
  BOOST_TEST(sessions.status == 200, sessions.body);
  BOOST_TEST(contains(sessions.body, "\"id\":\"" + id + "\""), sessions.body);
  auto recorder = kiln({"keys", "create", "--tenant", "acme", "--role", "recorder"});
  BOOST_REQUIRE(recorder.exit_code == 0);
  auto recorded =
      kiln({"record", "--key", "sim-u.key", "--speed", "0", "--duration", "60", "--server", url,
            "--api-key", recorder.out.substr(0, recorder.out.find('\n'))});
  BOOST_TEST(recorded.exit_code == 0, recorded.out << recorded.err);
  BOOST_TEST(contains(recorded.out, "batches: sent 7, refused 0, waiting in the spool 0"),
             recorded.out);
  served.signal(SIGTERM);
  BOOST_TEST(served.wait(30s).exit_code == 0);
}
