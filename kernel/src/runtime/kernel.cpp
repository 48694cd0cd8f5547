#include "runtime/kernel.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "auth/keys.hpp"
#include "common/embedded.hpp"
#include "common/log.hpp"
#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "kiln/nodes/event_detector.hpp"
#include "kiln/nodes/telemetry_driver.hpp"
#include "kiln/nodes/tool_strategy.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "kiln/testkit/report.hpp"
#include "missions/projection.hpp"
#include "runtime/builtin_tools.hpp"
#include "runtime/isolation.hpp"
#include "runtime/telemetry_tools.hpp"
#include "runtime/tts_tools.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"

namespace kiln::runtime {
namespace fs = std::filesystem;
namespace json = boost::json;
using common::join;

namespace {

constexpr const char* kEmbeddedConfig = "config/kiln.yaml";

// `from`: where the name came from ("--config", "KILN_CONFIG"), for the message.
config::YamlText read_yaml(const fs::path& path, const std::string& from) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw BootError(kExitConfig, "config file " + path.string() + " (" + from +
                                     ") is a directory; name a YAML file in it");
  std::ifstream in(path);
  if (!in)
    throw BootError(kExitConfig, "config file " + path.string() + " (" + from +
                                     "): cannot be read (" + std::strerror(errno) +
                                     "); name an existing file");
  std::stringstream ss;
  ss << in.rdbuf();
  auto abs = fs::absolute(path, ec);
  return {path.string(), ss.str(), abs.parent_path()};
}

}  // namespace

Kernel::Kernel() = default;
Kernel::~Kernel() {
  // Tools and nodes may hold their host past the kernel; they then see no nodes.
  if (registry_) registry_->set_node_resolver(nullptr);
}

std::unique_ptr<Kernel> Kernel::boot(const BootOptions& options) {
  std::unique_ptr<Kernel> k(new Kernel());
  k->kinds_ = nodes::builtin_kinds();

  // 1. Config layers.
  config::LoadOptions lo;
  if (!options.config_files.empty()) {
    for (const auto& f : options.config_files) lo.yaml.push_back(read_yaml(f, "--config"));
  } else if (auto it = options.environment.find("KILN_CONFIG");
             it != options.environment.end() && !it->second.empty()) {
    lo.yaml.push_back(read_yaml(it->second, "KILN_CONFIG"));
  } else {
    lo.yaml.push_back({std::string(kEmbeddedConfig) + " (embedded)",
                       std::string(common::embedded_file(kEmbeddedConfig)),
                       {}});
  }
  lo.environment = options.environment;
  lo.sets = options.sets;
  lo.set_origins = options.set_origins;
  k->one_shot_ = options.one_shot;
  k->serves_ = options.serves;
  k->missions_optional_ = options.missions_optional;
  std::vector<config::NodeKindInfo> kind_infos;
  for (const auto& d : k->kinds_) kind_infos.push_back({d.kind, d.default_node});
  try {
    k->config_ = config::Config::load(config::kernel_schema(kind_infos), lo);
  } catch (const config::ConfigError& e) {
    throw BootError(kExitConfig, e.what());
  }
  if (options.setup_logging) {
    std::string level = k->config_.get_string("log.level");
    if (options.one_shot && (level == "trace" || level == "debug" || level == "info")) {
      const auto it = k->config_.entries().find("log.level");
      const bool for_this_run = it != k->config_.entries().end() &&
                                (it->second.source.layer == config::Layer::kEnvironment ||
                                 it->second.source.layer == config::Layer::kCommandLine);
      if (!for_this_run) level = "warn";
    }
    common::setup_logging(level, k->config_.get_string("log.format"));
  }

  // 2. Plugins, then the plugin config they declare, then their tools.
  k->load_plugins();
  try {
    auto disabled = k->config_.get_strings("plugins.disabled");
    k->config_.apply_plugin_schemas(k->registry_->declared_config_keys(),
                                    std::set<std::string>(disabled.begin(), disabled.end()));
  } catch (const config::ConfigError& e) {
    throw BootError(kExitConfig, e.what());
  }
  k->load_policy();
  try {
    k->instantiate_tools();
  } catch (const plugins::PluginLoadError& e) {
    throw BootError(kExitPlugin, e.what());
  } catch (const config::ConfigError& e) {
    throw BootError(kExitConfig, e.what());
  }

  // 3. Gates and nodes.
  k->gates_ = std::make_unique<gates::GateStore>(
      config::expand_path(k->config_.get_string("gates.dir"), k->config_.config_dir()));
  k->audit_tool_calls_ = options.audit_tool_calls;
  if (options.resolve_nodes) k->resolve(options.node_kinds);
  if (options.open_storage) k->ledger();
  return k;
}

std::vector<fs::path> Kernel::search_paths() const {
  std::vector<fs::path> out;
  for (const auto& p : config_.get_strings("plugins.search_paths"))
    out.push_back(config::expand_path(p, config_.config_dir()));
  return out;
}

missions::ToolFacts Kernel::tool_facts() const {
  missions::ToolFacts f;
  for (const auto& t : registry_->tools())
    if (t.actuates) f.actuation_tools.push_back(t.name);
  return f;
}

void Kernel::without_missions(const std::string& problems) {
  spdlog::warn(
      "mission templates or policy refused ({}); kiln serve will not start until that is mended "
      "(kiln config check lists it). This command goes on: it does not run missions",
      problems);
  templates_ = std::make_unique<missions::TemplateSet>(missions::TemplateSet::parse({}));
  policy_ = std::make_unique<missions::Policy>();
  policy_check_ = {};
  admission_ = std::make_unique<missions::Admission>(*policy_, tool_facts());
}

void Kernel::load_policy() {
  // Every tool's input schema; a tool whose providers take different inputs is not checked here
  // (which one serves a call is the strategy's choice, when it runs).
  std::map<std::string, json::value> schemas;
  for (const auto& t : registry_->tools())
    if (auto [it, added] = schemas.emplace(t.name, t.input_schema);
        !added && it->second != t.input_schema)
      it->second = nullptr;
  std::vector<std::string> tools;
  for (const auto& [name, _] : schemas) tools.push_back(name);
  std::vector<std::string> policy_problems;
  try {
    templates_ = std::make_unique<missions::TemplateSet>(missions::TemplateSet::parse(
        missions::TemplateSet::sources(config_.get_strings("missions.dirs")), &schemas));
    policy_ = std::make_unique<missions::Policy>(missions::parse_policy(
        missions::policy_source(config_.get_string("policy.file")), &policy_problems));
  } catch (const missions::TemplateError& e) {
    if (!missions_optional_) throw BootError(kExitConfig, e.what());
    without_missions(e.what());
    return;
  }
  for (const auto& s : templates_->skipped())
    spdlog::info("mission template {} is left out: it is optional and a tool it uses is not loaded",
                 s);
  missions::PolicyWorld w;
  w.templates = templates_->names();
  w.tools = tools;
  w.actuation_tools = tool_facts().actuation_tools;
  for (const auto& p : registry_->plugins()) w.plugins.push_back(p.name);
  w.runtime_isolated_plugins = config_.get_strings("runtime.isolated_plugins");
  w.template_set = templates_.get();
  policy_check_ = missions::check_policy(*policy_, w);
  // Said where someone will read them: logged by what runs on (a command a person runs once
  // would repeat them every time; `policy validate` and `config check` print them).
  for (const auto& warning : policy_check_.warnings) {
    if (one_shot_)
      spdlog::debug("policy: {}", warning);
    else
      spdlog::warn("policy: {}", warning);
    warnings_.push_back("policy: " + warning);
  }
  // Every problem in one run: the structure's, then what the structure refers to.
  policy_problems.insert(policy_problems.end(), policy_check_.errors.begin(),
                         policy_check_.errors.end());
  if (!policy_problems.empty() && missions_optional_) {
    without_missions(join(policy_problems, "\n"));
    return;
  }
  if (!policy_problems.empty()) {
    std::string message = join(policy_problems, "\n");
    for (const auto& warning : policy_check_.warnings) message += "\nwarning: " + warning;
    throw BootError(kExitConfig, message + "\n(`kiln policy validate` checks the policy file)");
  }
  admission_ = std::make_unique<missions::Admission>(*policy_, tool_facts());
}

void Kernel::instantiate_tools() {
  std::set<std::string> isolated;
  std::vector<std::string> loaded;
  for (const auto& p : registry_->plugins()) loaded.push_back(p.name);
  const auto runtime_isolated = config_.get_strings("runtime.isolated_plugins");
  for (const auto& name : runtime_isolated) {
    if (std::find(loaded.begin(), loaded.end(), name) == loaded.end())
      throw BootError(kExitConfig, "runtime.isolated_plugins (" +
                                       config_.at("runtime.isolated_plugins").source.describe() +
                                       "): no loaded plugin is named '" + name + "' (loaded: " +
                                       join(loaded) + ")" + common::did_you_mean(name, loaded));
  }
  for (const auto& name : loaded)
    if (policy_->isolated(name, runtime_isolated)) isolated.insert(name);
  registry_->instantiate(config_, isolated);
  if (isolated.empty()) return;
  const fs::path exe =
      config::expand_path(config_.get_string("runtime.node_host_exe"), config_.config_dir());
  std::map<std::string, std::shared_ptr<NodeHost>> hosts;
  for (const auto& p : registry_->plugins())
    if (isolated.count(p.name))
      hosts[p.name] = std::make_shared<NodeHost>(exe, p.file, p.name, config_.plugin_config(p.name),
                                                 artifacts_path() / p.name);
  for (auto& t : registry_->mutable_tools()) {
    if (!isolated.count(t.provider)) continue;
    t.tool = std::make_shared<IsolatedTool>(hosts.at(t.provider), t.name);
    t.nonblocking = true;  // the node-host enforces the deadline itself
  }
  for (const auto& [name, _] : hosts)
    spdlog::info("plugin {}: tools run isolated in `{} node-host`", name, exe.string());
}

fs::path Kernel::storage_path() const {
  return config::expand_path(config_.get_string("storage.path"), config_.config_dir());
}

fs::path Kernel::artifacts_path() const {
  return config::expand_path(config_.get_string("storage.artifacts"), config_.config_dir());
}

namespace {

// Opening the database migrates it to this kiln's schema. A kiln serve of an older kiln running
// on it (holding `storage.path`.serve.lock, commands.cpp) would have its tables changed under it
// by a newer binary's command run after an upgrade: refused, naming the server.
void refuse_migrating_under_a_server(const std::filesystem::path& db) {
  std::error_code ec;
  if (!std::filesystem::exists(db, ec)) return;
  const int newest = storage::kernel_migrations().back().version;
  int version = newest;
  try {
    storage::Connection c(db, storage::Connection::Mode::kReadOnly);
    version = storage::migration_status(c).version;
  } catch (const std::exception&) {
    return;  // opening it for writing says what is wrong
  }
  if (version >= newest) return;
  const std::string lock_path = db.string() + ".serve.lock";
  const int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // no server ever ran here
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  char pid[32] = {};
  const auto n = ::pread(fd, pid, sizeof pid - 1, 0);
  ::close(fd);
  std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : "";
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  if (!held || holder == std::to_string(::getpid())) return;  // none, or this process's own
  throw BootError(
      kExitFailed,
      "the database " + db.string() + " is at schema version " + std::to_string(version) +
          " and a kiln serve" + (holder.empty() ? "" : " (pid " + holder + ")") +
          " runs on it; this kiln would migrate it to version " + std::to_string(newest) +
          " under that server. Restart the server with this kiln first (it "
          "migrates at start), or run this command with the server's kiln");
}

}  // namespace

ledger::Ledger& Kernel::ledger() {
  return sqlite_ledger();
}

std::optional<std::filesystem::path> newest_set_aside(const std::filesystem::path& db) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = db.has_parent_path() ? db.parent_path() : fs::path(".");
  const std::string prefix = db.filename().string() + ".before-restore-";
  std::string newest;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // The file itself, not its -wal or -shm; the newest (stamps sort by time).
    if (name.rfind(prefix, 0) == 0 && !name.ends_with("-wal") && !name.ends_with("-shm") &&
        name > newest)
      newest = name;
  }
  if (newest.empty()) return std::nullopt;
  return dir / newest;
}

std::optional<std::string> interrupted_restore(const std::filesystem::path& db) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // The copy is there from before the database is set aside until it is renamed into place:
  // with no database, that is a restore cut off in between (set-aside files alone are kept
  // after every restore, and say nothing).
  const fs::path copy = db.string() + ".restoring";
  if (fs::exists(db, ec) || !fs::exists(copy, ec)) return std::nullopt;
  const auto aside = newest_set_aside(db);
  const bool wal_left = fs::exists(db.string() + "-wal", ec);
  return "no database at " + db.string() + ", but a `kiln db restore` there was cut off" +
         (aside ? " after it set the database aside at " + aside->string() : std::string()) +
         (wal_left ? " (its -wal is still at " + db.string() + "-wal)" : std::string()) + "; " +
         copy.string() +
         " is the copy it was putting in place. Run `kiln db restore BACKUP` again (it checks "
         "the backup and finishes)" +
         (aside ? ", or move " + aside->string() + " (with its -wal and -shm" +
                      (wal_left ? ", and " + db.string() + "-wal" : std::string()) + ") back to " +
                      db.string() + " and remove " + copy.string() +
                      " to serve the database as it was."
                : std::string(".")) +
         " Nothing is made there until then.";
}

void Kernel::require_writable_storage() {
  sqlite_ledger();  // made and migrated (a new database is written here)
  if (storage::Connection(storage_path(), storage::Connection::Mode::kReadWrite).read_only())
    throw BootError(kExitStorage,
                    "storage: the database " + storage_path().string() +
                        " can be read but not written by this user (the file's permissions or "
                        "attributes — chattr +i — or a read-only filesystem); kiln writes it: fix "
                        "that, or set storage.path to a writable copy");
}

ledger::SqliteLedger& Kernel::sqlite_ledger() {
  std::lock_guard lock(ledger_mu_);
  if (!ledger_) {
    // A command run away from the deployment's directory or configuration would quietly keep
    // what it writes (keys, devices, profiles) in a database of its own: said where it is made.
    if (auto cut_off = interrupted_restore(storage_path()))
      throw BootError(kExitStorage, "storage: " + *cut_off);
    if (std::error_code ec; !std::filesystem::exists(storage_path(), ec)) {
      const auto& entries = config_.entries();
      const auto it = entries.find("storage.path");
      spdlog::warn(
          "no database at {} (storage.path, {}): creating a new one. If a kiln serve runs "
          "elsewhere, this is not its database: run where it runs, or give its configuration "
          "(--config FILE, KILN_CONFIG, KILN_STORAGE__PATH)",
          std::filesystem::absolute(storage_path(), ec).string(),
          it != entries.end() ? it->second.source.describe() : std::string("default"));
    }
    refuse_migrating_under_a_server(storage_path());
    try {
      ledger_ = std::make_unique<ledger::SqliteLedger>(storage_path());
    } catch (const storage::StorageError& e) {
      // What a restart will not mend (a service manager should not retry it: exit 6): a file
      // that is no database, damaged, of a newer kiln, or that this user may not open or write.
      // A busy or failing disk may mend: exit 1.
      const int code = e.sqlite_code() & 0xff;
      const bool lasting = code == SQLITE_MISMATCH || code == SQLITE_NOTADB ||
                           code == SQLITE_CORRUPT || code == SQLITE_CANTOPEN ||
                           code == SQLITE_READONLY || code == SQLITE_PERM || code == SQLITE_AUTH;
      throw BootError(lasting ? kExitStorage : kExitFailed, std::string("storage: ") + e.what());
    } catch (const std::exception& e) {
      throw BootError(kExitFailed, std::string("storage: ") + e.what());
    }
    // Before any append: the mission tables are kept in the same transaction as their events.
    ledger_->add_projector(&missions::project);
    ledger_->add_projector(&auth::project_keys);
    ledger_->add_projector(&telemetry::project_devices);
    ledger_->add_projector(&telemetry::project_sessions);
    ledger_->add_projector(&telemetry::project_profiles);
    spdlog::debug("storage open: {}", storage_path().string());
  }
  return *ledger_;
}

void Kernel::load_plugins() {
  registry_ = std::make_unique<plugins::PluginRegistry>(metrics_, artifacts_path());
  // HostServices::selected_node: the instances resolve() made (written only during boot).
  registry_->set_node_resolver([this](std::string_view kind) -> std::shared_ptr<void> {
    auto it = instances_.find(std::string(kind));
    return it == instances_.end() ? nullptr : it->second;
  });
  plugins::NodeEntry static_node;
  auto decl = NodeDecl::make<nodes::ToolStrategy>(
      nodes::ToolStrategy::kDefaultNode,
      "tool -> provider map from config, else the first "
      "registered provider",
      [](const NodeContext& ctx) {
        return std::make_shared<nodes::StaticToolStrategy>(
            nodes::ToolStrategySettings::from_json(ctx.kind_config));
      });
  static_node.kind = decl.kind;
  static_node.name = decl.name;
  static_node.description = decl.description;
  static_node.factory = decl.factory;
  registry_->add_builtin_node(std::move(static_node));
  for (auto& t : builtin_tools()) registry_->add_builtin_tool(std::move(t));
  // The tts_engine kind's tools speak through whichever node resolve() selects.
  for (auto& t : tts_tools([this] { return node<nodes::TtsEngine>(); }))
    registry_->add_builtin_tool(std::move(t));
  for (auto& t : telemetry_tools([this] { return storage_path(); },
                                 [this] { return node<nodes::TelemetryDriver>(); }))
    registry_->add_builtin_tool(std::move(t));

  std::vector<fs::path> missing;
  auto files = plugins::discover(search_paths(), &missing);
  for (const auto& m : missing) spdlog::debug("plugin search path {} does not exist", m.string());
  if (!search_paths().empty() && missing.size() == search_paths().size()) {
    std::vector<std::string> where;
    for (const auto& m : missing) where.push_back(m.string());
    const std::string msg = "no directory of plugins.search_paths exists (" + join(where) +
                            "): no plugin is loaded, so the nodes and tools plugins provide "
                            "are off";
    spdlog::warn("{}", msg);
    warnings_.push_back(msg);
  }
  auto disabled_list = config_.get_strings("plugins.disabled");
  std::set<std::string> disabled(disabled_list.begin(), disabled_list.end());
  auto refusals = registry_->load(files, disabled);
  if (!refusals.empty()) {
    if (config_.get_string("plugins.on_error") == "fail")
      throw BootError(kExitPlugin,
                      join(refusals, "\n") +
                          "\n(plugins.on_error is 'fail'; set it to 'skip' to start without them)");
    for (const auto& r : refusals) {
      spdlog::warn("plugin skipped (plugins.on_error=skip): {}", r);
      warnings_.push_back(r);
    }
  }
  for (const auto& p : registry_->plugins())
    spdlog::debug("plugin {} {} loaded: nodes [{}], tools [{}]", p.name, p.version, join(p.nodes),
                  join(p.tools));
}

const nodes::KindDescriptor* Kernel::kind(std::string_view name) const {
  for (const auto& d : kinds_)
    if (d.kind == name) return &d;
  return nullptr;
}

std::vector<NodeStatus> Kernel::node_status() const {
  std::vector<NodeStatus> out;
  for (const auto& d : kinds_) {
    NodeStatus s;
    s.kind = d.kind;
    const auto& e = config_.at("nodes." + d.kind);
    s.selected = std::string(e.value.as_string());
    s.source = e.source;
    s.is_default = s.selected == d.default_node;
    s.available = registry_->node_names(d.kind);
    s.entry = registry_->find_node(d.kind, s.selected);
    if (s.entry) s.gate = gates_->check(*s.entry, s.is_default, d.contract_version);
    out.push_back(std::move(s));
  }
  return out;
}

nodes::NodeMaker Kernel::node_maker(const plugins::NodeEntry& entry, bool deployment_config) {
  json::object plugin_config;
  if (deployment_config) {
    plugin_config = config_.plugin_config(entry.provider);
  } else {
    for (const auto& p : registry_->plugins())
      if (p.name == entry.provider)
        for (const auto& k : p.config_keys) plugin_config[k.key] = k.default_value;
  }
  std::shared_ptr<HostServices> host = registry_->shared_host(entry.provider);
  return [entry, host, plugin_config](const json::object& kind_config) -> std::shared_ptr<void> {
    std::shared_ptr<void> obj;
    try {
      obj = entry.factory(NodeContext{*host, kind_config, plugin_config});
    } catch (const std::invalid_argument& e) {
      // The factory's way to say its settings are wrong: a configuration error (exit 3), not
      // a broken plugin.
      throw std::invalid_argument(std::string(e.what()) + " (node " + entry.kind + "/" +
                                  entry.name + ", provider " + entry.provider + ")");
    } catch (const std::exception& e) {
      throw plugins::PluginLoadError("node " + entry.kind + "/" + entry.name + " (provider " +
                                     entry.provider + "): factory threw: " + e.what());
    }
    if (!obj)
      throw plugins::PluginLoadError("node " + entry.kind + "/" + entry.name + " (provider " +
                                     entry.provider + "): factory returned null");
    return plugins::keep_library_alive(std::move(obj), entry.library, host);
  };
}

std::optional<std::string> Kernel::unprovided_selection(const NodeStatus& s) const {
  // The embedded config's selections are the defaults written down, not the deployment's.
  const bool embedded = s.source.where.rfind(std::string(kEmbeddedConfig) + " (embedded)", 0) == 0;
  if (s.entry || embedded || s.source.layer == config::Layer::kDefault ||
      s.source.layer == config::Layer::kPluginDefault)
    return std::nullopt;
  std::vector<std::string> where;
  for (const auto& p : search_paths()) where.push_back(p.string());
  return "nodes." + s.kind + ": node '" + s.selected + "' is selected by " + s.source.describe() +
         " but no loaded plugin provides it (" + std::to_string(registry_->plugins().size()) +
         " plugin(s) loaded from plugins.search_paths: " + join(where) +
         "); check plugins.search_paths and plugins.disabled";
}

void Kernel::resolve(const std::set<std::string>& only) {
  const bool strict = config_.get_string("gates.enforce") == "strict";
  for (const auto& s : node_status()) {
    if (!only.empty() && !only.count(s.kind) && s.kind != "tool_strategy") continue;
    const std::string id = s.kind + "/" + s.selected;
    if (!s.entry && s.is_default) {
      // Selected by the deployment by name: it means to use the node, and runs without it
      // would store telemetry with no sessions, say, and report ready.
      if (auto problem = unprovided_selection(s)) throw BootError(kExitConfig, *problem);
      // The default node comes with a plugin this build or deployment does not load (e.g.
      // tts_torch without KILN_WITH_TORCH): the kind is off, its tools say so when called.
      spdlog::info(
          "kind {}: no loaded plugin provides the default node '{}'; the kind is off "
          "(its tools answer provider_unavailable)",
          s.kind, s.selected);
      continue;
    }
    if (!s.entry)
      throw BootError(kExitConfig, "nodes." + s.kind + ": unknown node '" + s.selected +
                                       "' (set by " + s.source.describe() +
                                       "); available: " + join(s.available) +
                                       common::did_you_mean(s.selected, s.available));
    if (!s.gate.usable()) {
      std::string msg = "node " + id + " (selected by " + s.source.describe() +
                        ") is not gated: " + s.gate.reason + "; run `kiln gate run " + id +
                        "` with this same configuration (its plugins.search_paths and gates.dir)";
      if (strict)
        throw BootError(kExitGateRefused, msg + " (or set gates.enforce=warn for development)");
      msg = "GATE NOT ENFORCED (gates.enforce=warn): " + msg;
      spdlog::warn("{}", msg);
      warnings_.push_back(msg);
    }
    try {
      instances_[s.kind] = node_maker(*s.entry, true)(config_.section(s.kind));
    } catch (const plugins::PluginLoadError& e) {
      throw BootError(kExitPlugin, e.what());
    } catch (const std::invalid_argument& e) {
      throw BootError(kExitConfig, e.what());
    } catch (const std::exception& e) {
      throw BootError(kExitConfig, "node " + id + ": " + e.what());
    }
    spdlog::debug("node {} selected ({}), gate: {}", id, s.source.describe(),
                  gates::to_string(s.gate.state));
  }
  ExecutorOptions eo;
  eo.backoff_initial = std::chrono::milliseconds(config_.get_int("runtime.backoff_initial_ms"));
  eo.backoff_max = std::chrono::milliseconds(config_.get_int("runtime.backoff_max_ms"));
  eo.observe = [m = tool_metrics_](const ToolCall& call, const ToolOutcome& o, double s) {
    m->record(call.tool, o.ok() ? "ok" : o.error().code, s);
  };
  eo.admit = [admission = admission_.get()](const ToolCall& call) {
    return admission->admit(call);
  };
  if (audit_tool_calls_ && config_.get_bool("runtime.audit_tool_calls"))
    eo.audit = [this](std::vector<ledger::NewEvent> events) {
      ledger().append_async(std::move(events));
    };
  executor_ = std::make_unique<ToolRuntimeExecutor>(registry_->tools(), node<nodes::ToolStrategy>(),
                                                    std::move(eo));
}

json::array Kernel::describe_templates() const {
  json::array arr;
  const auto facts = tool_facts();
  for (const auto& [name, t] : templates_->all()) {
    json::array steps;
    for (const auto& s : t.steps) {
      json::array needs;
      for (const auto& n : s.needs) needs.push_back(json::value(n));
      steps.push_back(json::object{
          {"id", s.id},
          {"tool", s.tool},
          {"needs", needs},
          {"approval",
           std::string(missions::to_string(policy_->step_approval(s, facts.actuates(s.tool))))},
          {"max_attempts", s.max_attempts},
          {"timeout_ms", s.timeout_ms ? json::value(*s.timeout_ms) : json::value(nullptr)}});
    }
    arr.push_back(json::object{{"name", name},
                               {"description", t.description},
                               {"source", t.source},
                               {"inputs", t.input_schema.at("properties")},
                               {"steps", steps}});
  }
  return arr;
}

missions::MissionService& Kernel::missions() {
  auto& l = sqlite_ledger();
  std::lock_guard lock(ledger_mu_);
  if (!missions_) {
    missions::MissionOptions o;
    o.lease = std::chrono::milliseconds(config_.get_int("missions.lease_ms"));
    o.max_reclaims = static_cast<int>(config_.get_int("missions.max_reclaims"));
    missions_ = std::make_unique<missions::MissionService>(l, storage_path(), *templates_, *policy_,
                                                           tool_facts(), o);
  }
  return *missions_;
}

auth::KeyStore& Kernel::keys() {
  auto& l = sqlite_ledger();
  std::lock_guard lock(ledger_mu_);
  if (!keys_) keys_ = std::make_unique<auth::KeyStore>(l, storage_path());
  return *keys_;
}

std::optional<std::string> Kernel::start_session_report(const telemetry::SessionInfo& s) {
  auto& m = missions();
  const std::string mission = config_.get_string("sessions.mission");
  missions::CreateRequest req;
  req.tenant = s.tenant;
  req.template_name = mission;
  // The marks and weights as they are now, so that the mission reports what it was started
  // for however they change while it waits.
  const auto started_for = s.report_inputs();
  req.inputs = started_for;
  req.inputs["session"] = s.id;
  // Once per close and marks: a session opened again (readings continued it) gets a new
  // report, and so does one a roaster marked after it closed (the same marks again: the
  // report already made for them).
  req.idempotency_key =
      "session:" + s.id + (s.reopens ? "#" + std::to_string(s.reopens) : std::string());
  if (!s.marks.empty() || s.green_g || s.roasted_g)
    *req.idempotency_key +=
        "|marks:" + common::sha256_hex(boost::json::serialize(started_for)).substr(0, 16);
  req.actor = missions::Actor{"sessionizer", missions::Role::kOperator};
  try {
    auto r = m.create(req);
    // The report it replaces (made before these marks or weights) leaves the queues: an
    // approver would otherwise be asked about a roast whose report has been made again. One
    // running is canceled too (its worker stops at its next step, missions.md): left to finish,
    // its QC could still hold it for an approver beside the new one.
    if (s.mission_id && *s.mission_id != r.mission.id) {
      const auto old = m.get(s.tenant, *s.mission_id);
      const std::string why =
          "replaced by mission " + r.mission.id + " (the session's marks or weights changed)";
      if (old && !missions::is_terminal(old->state)) {
        try {
          m.cancel(s.tenant, old->id, req.actor, why);
          spdlog::info("session {}: mission {} replaced by {}", s.id, old->id, r.mission.id);
        } catch (const std::exception& e) {  // it moved on meanwhile (another worker ran it)
          spdlog::warn("session {}: mission {}, which {} replaces, was not cancelled: {}", s.id,
                       old->id, r.mission.id, e.what());
        }
      }
      // Its files (the spoken summary of numbers since changed) are not kept beside the
      // new report's: each report again would otherwise add ≈ 0.5 MB of audio. Their
      // digests stay in the ledger. One canceled above keeps what it has (a step may still be
      // running); retention releases it later.
      if (old && missions::is_terminal(old->state)) {
        try {
          if (const auto n = m.release_artifacts(s.tenant, old->id, req.actor, why))
            spdlog::info("session {}: {} file(s) of mission {} released", s.id, n, old->id);
        } catch (const std::exception& e) {
          spdlog::warn("session {}: the files of mission {}, which {} replaces, are kept: {}", s.id,
                       old->id, r.mission.id, e.what());
        }
      }
    }
    spdlog::info("session {}: mission {} ({}) {}", s.id, r.mission.id, mission, r.mission.state);
    return r.mission.id;
  } catch (const std::exception& e) {
    spdlog::error(
        "session {}: the {} mission could not be started: {} (its report stays due: kiln "
        "serve starts it again)",
        s.id, mission, e.what());
    return std::nullopt;
  }
}

telemetry::TelemetryService& Kernel::telemetry() {
  auto& l = sqlite_ledger();
  missions();  // before the lock: closed sessions start their reports through it
  std::lock_guard lock(ledger_mu_);
  if (!telemetry_) {
    telemetry::IngestOptions io;
    io.max_skew_s = config_.get_number("telemetry.max_skew_s");
    io.max_age_s = config_.get_number("telemetry.max_age_s");
    io.max_samples = static_cast<std::size_t>(config_.get_int("telemetry.max_batch_samples"));
    io.max_bytes = static_cast<std::size_t>(config_.get_int("telemetry.max_batch_bytes"));
    io.window = static_cast<std::uint64_t>(config_.get_int("telemetry.sequence_window"));
    telemetry::SessionOptions so;
    so.preroll_s = config_.get_number("sessions.preroll_s");
    so.silence_s = config_.get_number("sessions.silence_s");
    so.max_length_s = config_.get_number("sessions.max_length_s");
    so.min_length_s = config_.get_number("sessions.min_length_s");
    so.resume_gap_s = config_.get_number("sessions.resume_gap_s");
    if (!serves_) so.report_retry_s = 0;  // kiln serve starts the reports left due
    const std::string mission = config_.get_string("sessions.mission");
    auto detector = [this] { return node<nodes::EventDetector>(); };
    auto on_closed = [this](const telemetry::SessionInfo& s) { return start_session_report(s); };
    telemetry_ = std::make_unique<telemetry::TelemetryService>(
        l, io, so, detector,
        mission.empty() ? telemetry::Sessionizer::ClosedFn()
                        : telemetry::Sessionizer::ClosedFn(on_closed));
  }
  return *telemetry_;
}

const ToolRuntimeExecutor& Kernel::executor() const {
  if (!executor_)
    throw std::logic_error("the executor exists only after a boot with resolve_nodes");
  return *executor_;
}

gates::GateRecord Kernel::run_gate(const std::string& kind_name, const std::string& node_name,
                                   const std::function<void(const gates::GateRecord&)>& on_hang) {
  const nodes::KindDescriptor* d = kind(kind_name);
  if (!d) {
    std::vector<std::string> names;
    for (const auto& k : kinds_) names.push_back(k.kind);
    throw BootError(kExitUsage, "unknown node kind '" + kind_name + "' (kinds: " + join(names) +
                                    ")" + common::did_you_mean(kind_name, names));
  }
  const plugins::NodeEntry* candidate = registry_->find_node(kind_name, node_name);
  if (!candidate) {
    auto names = registry_->node_names(kind_name);
    std::vector<std::string> where;
    for (const auto& p : search_paths()) where.push_back(p.string());
    throw BootError(kExitUsage,
                    "unknown node " + kind_name + "/" + node_name + " (available: " + join(names) +
                        ")" + common::did_you_mean(node_name, names) +
                        "; no loaded plugin provides it (plugins searched in " + join(where) +
                        "): a plugin of your own needs its directory in "
                        "plugins.search_paths, set as for the command that runs it");
  }
  const plugins::NodeEntry* control = registry_->find_node(kind_name, d->default_node);
  if (!control)
    throw BootError(kExitPlugin, "the default node " + kind_name + "/" + d->default_node +
                                     " is not loaded; it is needed as the parity control");

  gates::GateRecord r;
  r.kind = kind_name;
  r.node = node_name;
  r.provider = candidate->provider;
  r.plugin_file = candidate->file.string();
  r.plugin_sha256 = candidate->sha256;
  r.contract_version = d->contract_version;
  r.abi_version = kAbiVersion;
  r.kiln_version = kVersion;
  r.ran_at = gates::utc_now_iso8601();
  r.cases_origin = d->parity_cases_origin;
  r.intended_differences = candidate->intended_differences;

  // The watchdog below covers a node's factory and destructor too, wherever a suite calls them:
  // a node that hangs there is named as such.
  auto watched = [](nodes::NodeMaker make, std::string node) -> nodes::NodeMaker {
    return [make = std::move(make), node = std::move(node)](const json::object& kind_config) {
      std::shared_ptr<void> made;
      {
        testkit::RunningCheck::Scope building("building the node " + node);
        made = make(kind_config);
      }
      void* raw = made.get();
      return std::shared_ptr<void>(raw, [made = std::move(made), node](void*) mutable {
        testkit::RunningCheck::Scope destroying("destroying the node " + node);
        made.reset();
      });
    };
  };
  auto candidate_maker = watched(node_maker(*candidate, false), kind_name + "/" + node_name);
  auto control_maker = watched(node_maker(*control, false), kind_name + "/" + d->default_node);
  // The record and its ledger event: a plugin's gate only (a built-in node needs none).
  auto record = [&](const gates::GateRecord& rec) {
    if (candidate->builtin()) return;
    gates_->write(rec);
    // The decision joins the audit trail: who ran which gate on which binary, with what result.
    json::object payload{{"kind", rec.kind},
                         {"node", rec.node},
                         {"provider", rec.provider},
                         {"plugin_sha256", rec.plugin_sha256},
                         {"contract_version", rec.contract_version},
                         {"abi_version", rec.abi_version},
                         {"result", rec.passed ? "PASS" : "FAIL"},
                         {"record", gates_->record_path(rec.kind, rec.node).string()}};
    ledger().append(ledger::NewEvent{"system", "gates", "gate.recorded", std::move(payload)});
  };
  // A check that never returns (the node hangs or deadlocks) cannot be stopped, only outlived:
  // the watchdog records the gate as failed on that check and ends the process.
  const auto limit = std::chrono::seconds(config_.get_int("gates.check_timeout_s"));
  std::atomic<const char*> suite{"prepare"};  // the step under way, as the record names it
  std::mutex contract_mu;
  json::object contract_done;  // the contract suite's report once it finished
  std::jthread watchdog([&, base = r](std::stop_token stop) {
    while (!stop.stop_requested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto overdue = testkit::RunningCheck::instance().overdue(limit);
      if (!overdue) continue;
      const std::string why = "did not finish within " + std::to_string(limit.count()) +
                              " s (gates.check_timeout_s): the node hangs or deadlocks";
      testkit::SuiteReport hung;
      hung.suite = suite.load();
      hung.add(*overdue, false, why);
      gates::GateRecord failed = base;
      if (hung.suite != std::string_view("parity")) {  // preparing, or the contract suite
        failed.contract = hung.to_json();
      } else {
        std::lock_guard lock(contract_mu);
        failed.contract = contract_done;
        failed.parity = hung.to_json();
      }
      failed.passed = false;
      try {
        record(failed);
        ledger().flush();
      } catch (const std::exception& e) {
        spdlog::error("gate {}/{}: recording the failure: {}", kind_name, node_name, e.what());
      }
      spdlog::error("gate {}/{}: FAIL: {} check '{}' {}", kind_name, node_name, hung.suite,
                    *overdue, why);
      if (on_hang) on_hang(failed);
      std::fflush(nullptr);
      std::_Exit(kExitFailed);  // the hung call holds a thread no one can stop
    }
  });
  spdlog::info("gate {}/{}: running the contract suite (contract version {})", kind_name, node_name,
               d->contract_version);
  const boost::json::object kind_config = [&] {
    if (!d->prepare) return boost::json::object{};
    testkit::RunningCheck::Scope preparing("preparing the suites (the kind's control run of " +
                                           kind_name + "/" + d->default_node + ")");
    return d->prepare(control_maker, gates_->record_path(kind_name, node_name).parent_path());
  }();
  suite = "contract";
  auto contract = d->contract(candidate_maker, kind_config);
  {
    std::lock_guard lock(contract_mu);
    contract_done = contract.to_json();
  }
  suite = "parity";
  spdlog::info("gate {}/{}: running the parity suite against {}/{}", kind_name, node_name,
               kind_name, d->default_node);
  auto parity =
      d->parity(control_maker, candidate_maker, candidate->intended_differences, kind_config);
  r.contract = contract.to_json();
  r.parity = parity.to_json();
  r.passed = contract.passed() && parity.passed();
  watchdog.request_stop();
  watchdog.join();
  record(r);
  return r;
}

}  // namespace kiln::runtime
