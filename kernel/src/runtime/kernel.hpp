// The kernel: config, plugins, nodes, gates and the tool executor, booted in one place.
// `kiln serve` and every other command start here; tests boot it the same way.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "auth/keys.hpp"
#include "config/config.hpp"
#include "gates/gate_store.hpp"
#include "ledger/ledger.hpp"
#include "missions/admission.hpp"
#include "missions/policy.hpp"
#include "missions/service.hpp"
#include "missions/templates.hpp"
#include "nodes/kinds.hpp"
#include "plugins/registry.hpp"
#include "runtime/executor.hpp"
#include "runtime/metrics.hpp"
#include "telemetry/service.hpp"

namespace kiln::runtime {

// Process exit codes, documented in `kiln --help` and docs/architecture/cli.md.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,       // the operation ran and failed (tool error, gate FAIL, ...)
  kExitUsage = 2,        // bad command line
  kExitConfig = 3,       // invalid configuration
  kExitGateRefused = 4,  // a selected non-default node is not gated
  kExitPlugin = 5,       // a plugin could not be loaded or instantiated
  kExitStorage = 6,      // the database cannot be used (unreadable, not a database, too new)
};

class BootError : public std::runtime_error {
 public:
  BootError(int exit_code, const std::string& message)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

struct BootOptions {
  std::vector<std::filesystem::path>
      config_files;                                // empty: $KILN_CONFIG, else the embedded default
  std::vector<std::string> sets;                   // --set key=value
  std::map<std::string, std::string> set_origins;  // a set -> the flag that made it (--driver X)
  std::map<std::string, std::string> environment = config::current_environment();
  bool resolve_nodes = true;  // false: load and validate only (gate run, config check, listings)
  // The node kinds to resolve (with resolve_nodes); empty: every kind. The tool executor's
  // tool_strategy is always resolved. A command that uses one kind (kiln record: the telemetry
  // driver) then neither loads nor depends on the others (a TTS voice, an ungated TTS node).
  std::set<std::string> node_kinds;
  bool open_storage = false;  // open (create, migrate) the database during boot, as serve does
  // false: this process's tool calls are not audited whatever runtime.audit_tool_calls says — a
  // command that only reads a file it was given (kiln analyze) leaves no database behind.
  bool audit_tool_calls = true;
  bool setup_logging = true;
  // A command a person runs once (kiln sessions weigh, kiln devices list): its log says only
  // warnings and errors — its output is what it prints — unless log.level is set for this run
  // (KILN_LOG__LEVEL, --set log.level=…); a configuration file's level is the service's.
  bool one_shot = false;
  // For the commands that look after the database (db status|backup|restore, ledger
  // verify|export|backfill): mission templates or a policy the loaded plugins refuse (a plugin
  // upgrade that changed a tool's input) are a warning, not exit 3 — the copy or check needed
  // to recover must still run. This kernel then has no templates and a policy that admits none.
  bool missions_optional = false;
  // kiln serve: the one process that starts the roast reports another left due (a process
  // stopped between a session's close and its report mission; SessionOptions::report_retry_s).
  bool serves = false;
};

// When there is no database at `db` but a `kiln db restore` was cut off there (it had set the
// database aside and not yet put the copy in place): what happened and what to do; else nullopt.
// A new empty database must not be made there — a service restarted then would serve nothing.
std::optional<std::string> interrupted_restore(const std::filesystem::path& db);
// The newest file `kiln db restore` set aside for `db` (DB.before-restore-TIME), if any.
std::optional<std::filesystem::path> newest_set_aside(const std::filesystem::path& db);

struct NodeStatus {
  std::string kind;
  std::string selected;
  config::Source source;
  bool is_default = false;
  gates::GateCheck gate;
  const plugins::NodeEntry* entry = nullptr;  // null when the selected name is unknown
  std::vector<std::string> available;
};

class Kernel {
 public:
  // Throws BootError with the exit code to use and a message that says what to do.
  static std::unique_ptr<Kernel> boot(const BootOptions& options);
  ~Kernel();

  const config::Config& config() const { return config_; }
  plugins::PluginRegistry& registry() { return *registry_; }
  const plugins::PluginRegistry& registry() const { return *registry_; }
  const std::vector<nodes::KindDescriptor>& kinds() const { return kinds_; }
  const gates::GateStore& gates() const { return *gates_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  std::vector<std::filesystem::path> search_paths() const;
  std::filesystem::path storage_path() const;
  // Whether the database has been opened (ledger() opens it on first use).
  bool storage_open() const {
    std::lock_guard lock(ledger_mu_);
    return ledger_ != nullptr;
  }
  // storage.artifacts, expanded: the root of the plugins' artifact directories.
  std::filesystem::path artifacts_path() const;
  // The ledger; opens (creating and migrating) the database on first use. Throws BootError.
  ledger::Ledger& ledger();

  // Mission templates and policy (loaded and checked at boot) and the mission service (opens
  // storage on first use).
  const missions::TemplateSet& templates() const { return *templates_; }
  const missions::Policy& policy() const { return *policy_; }
  const missions::PolicyCheck& policy_check() const { return policy_check_; }
  missions::ToolFacts tool_facts() const;
  missions::MissionService& missions();
  // The mission templates as `kiln mission templates --json` and GET /v1/mission-templates give
  // them: name, description, source, inputs (JSON Schema properties), steps (id, tool, needs,
  // the approval policy gives it, attempts, timeout).
  boost::json::array describe_templates() const;
  const ToolMetrics& tool_metrics() const { return *tool_metrics_; }
  const Metrics& plugin_metrics() const { return *metrics_; }
  auth::KeyStore& keys();
  // Device keys, ingestion and sessions (opens storage on first use). A closed session starts
  // the mission named by sessions.mission (default roast_report) for it.
  telemetry::TelemetryService& telemetry();
  // What a closed session (or a roaster's change asking for its report) starts: the mission
  // sessions.mission names, for the session's marks and weights as they are (idempotent per
  // close and marks); the report it replaces is canceled unless it has ended, or its files
  // released if it has. The mission's id, or nullopt when it could not be started (logged).
  std::optional<std::string> start_session_report(const telemetry::SessionInfo& s);
  ledger::SqliteLedger& sqlite_ledger();
  // For a process that writes as it runs (kiln serve, mission work): a database this user may
  // read but not write is a BootError (exit 6) now, not a refusal at the first write after
  // /ready said ready. Commands that only read do not ask.
  void require_writable_storage();

  // Selected node and gate state of every kind, without instantiating anything.
  std::vector<NodeStatus> node_status() const;
  // A default node the deployment selects by name (file, environment, --set) that no loaded
  // plugin provides: the refusal, naming where it was set and where plugins were searched.
  std::optional<std::string> unprovided_selection(const NodeStatus& s) const;

  // The executor; only after a boot with resolve_nodes.
  const ToolRuntimeExecutor& executor() const;
  // Instantiated node of a kind (after resolve_nodes), as the kind's interface.
  template <class Kind>
  std::shared_ptr<Kind> node() const {
    auto it = instances_.find(Kind::kKind);
    return it == instances_.end() ? nullptr : std::static_pointer_cast<Kind>(it->second);
  }

  // Runs the kind's contract and parity suites on KIND/NODE, writes the record to the gate
  // store and returns it. Throws BootError for an unknown kind or node.
  // `on_hang`: given the failed record before a check that did not finish
  // (gates.check_timeout_s) ends the process (`kiln gate run --json` prints it).
  gates::GateRecord run_gate(const std::string& kind, const std::string& node,
                             const std::function<void(const gates::GateRecord&)>& on_hang = {});

  // Builds instances of `entry`. With `deployment_config`, the plugin gets the deployment's
  // plugin_config; without, its manifest defaults (what gates measure: the binary itself).
  nodes::NodeMaker node_maker(const plugins::NodeEntry& entry, bool deployment_config);

 private:
  Kernel();
  void load_plugins();
  void load_policy();
  void without_missions(const std::string& problems);  // BootOptions::missions_optional
  void instantiate_tools();
  void resolve(const std::set<std::string>& only);  // only: BootOptions::node_kinds
  const nodes::KindDescriptor* kind(std::string_view name) const;

  config::Config config_;
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>();
  std::shared_ptr<ToolMetrics> tool_metrics_ = std::make_shared<ToolMetrics>();
  std::vector<nodes::KindDescriptor> kinds_;
  std::unique_ptr<plugins::PluginRegistry> registry_;
  bool audit_tool_calls_ = true;  // BootOptions::audit_tool_calls
  std::unique_ptr<gates::GateStore> gates_;
  std::map<std::string, std::shared_ptr<void>> instances_;
  std::unique_ptr<ToolRuntimeExecutor> executor_;
  mutable std::mutex ledger_mu_;  // ledger() may first be called from several request threads
  std::unique_ptr<ledger::SqliteLedger> ledger_;
  std::unique_ptr<missions::TemplateSet> templates_;
  std::unique_ptr<missions::Policy> policy_;
  missions::PolicyCheck policy_check_;
  std::unique_ptr<missions::Admission> admission_;
  std::unique_ptr<missions::MissionService> missions_;
  std::unique_ptr<auth::KeyStore> keys_;
  std::unique_ptr<telemetry::TelemetryService> telemetry_;
  std::vector<std::string> warnings_;
  bool one_shot_ = false;           // BootOptions::one_shot
  bool serves_ = false;             // BootOptions::serves
  bool missions_optional_ = false;  // BootOptions::missions_optional
};

}  // namespace kiln::runtime
