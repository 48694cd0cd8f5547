// Missions: creation through the governor, operator actions, and the worker protocol (claim with
// a lease, heartbeats, step results). Every change is a ledger command: the decision is taken on
// the ledger's writer inside the transaction that appends its events, and the mission tables are
// the projection of those events (missions/projection.hpp). See docs/architecture/missions.md.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "kiln/tool.hpp"
#include "ledger/ledger.hpp"
#include "missions/policy.hpp"
#include "missions/templates.hpp"

namespace kiln::missions {

// viewer < operator < approver < admin
// Ordered: a route open to a role is open to the ones above it. A recorder (a roaster's key) is
// below viewer: it reads nothing, and sends telemetry (POST /v1/telemetry takes recorder and
// operator keys and up, not viewer ones).
enum class Role { kRecorder = -1, kViewer = 0, kOperator = 1, kApprover = 2, kAdmin = 3 };
std::optional<Role> parse_role(std::string_view s);
std::string_view to_string(Role r);

struct Actor {
  std::string name;
  Role role = Role::kViewer;
  boost::json::object to_json() const;
};

// Mission states (ARCHITECTURE §6). Terminal: DONE, FAILED, CANCELED, BLOCKED.
namespace state {
inline constexpr const char* kPending = "PENDING";
inline constexpr const char* kRunning = "RUNNING";
inline constexpr const char* kRetry = "RETRY";
inline constexpr const char* kQuarantined = "QUARANTINED";
inline constexpr const char* kBlocked = "BLOCKED";
inline constexpr const char* kDone = "DONE";
inline constexpr const char* kFailed = "FAILED";
inline constexpr const char* kCanceled = "CANCELED";
}  // namespace state
bool is_terminal(std::string_view state);
// Where --wait stops: terminal, or QUARANTINED (held for a person).
bool is_settled(std::string_view state);

// Errors of mission operations, each with a stable code (mapped to exit codes and HTTP statuses).
class MissionError : public std::runtime_error {
 public:
  enum class Code { kNotFound, kForbidden, kConflict, kInvalidState, kInvalidInput, kLeaseLost };
  // `field`: the request field that was wrong, when one was ("inputs.who", "template").
  MissionError(Code code, const std::string& message, std::string field = {})
      : std::runtime_error(message), code_(code), field_(std::move(field)) {}
  Code code() const { return code_; }
  std::string_view code_name() const;
  const std::string& field() const { return field_; }

 private:
  Code code_;
  std::string field_;
};

// A file a step's tool returned beside its output (kiln::Artifact), as kept in
// mission_artifacts; `data` is read only when the file itself is asked for.
struct ArtifactInfo {
  std::string step;
  std::string name;
  std::string media_type;
  std::int64_t bytes = 0;
  std::string sha256;
  std::string created_at;
  boost::json::object to_json() const;  // without the data
};
struct StoredArtifact {
  ArtifactInfo info;
  std::string data;
};

struct StepView {
  std::string step;
  std::string tool;
  std::string approval;
  std::string state;  // PENDING | RUNNING | DONE | FAILED
  std::int64_t attempts = 0;
  std::optional<std::string> approved_by;
  boost::json::value output;  // null until DONE
  boost::json::value error;   // the last failure, or null
  std::optional<std::string> started_at;
  std::optional<std::string> finished_at;
  std::vector<ArtifactInfo> artifacts;  // of its last completed run
};

struct MissionView {
  std::string id;
  std::string tenant;
  std::string template_name;
  boost::json::object inputs;
  std::string state;
  std::string decision;  // the governor's: ALLOW | QUARANTINE | BLOCK | RETRY_LATER
  std::string reason;    // reason code of the last transition
  std::optional<std::string> idempotency_key;
  std::string created_by;
  std::string created_at;
  std::string updated_at;
  std::optional<std::string> not_before;
  std::optional<std::string> lease_owner;
  std::optional<std::string> lease_until;
  std::int64_t claims = 0;
  std::int64_t last_seq = 0;
  std::vector<StepView> steps;
  // `outputs` false: the steps without their outputs (a list's rows; a roast report's outputs
  // carry its curve and page, tens of KB a mission).
  boost::json::object to_json(bool outputs = true) const;
  // The view back from to_json's form (a server's answer); missing members stay empty. Throws
  // std::invalid_argument when `v` is not a mission.
  static MissionView from_json(const boost::json::value& v);
};

struct CreateRequest {
  std::string tenant = "default";
  std::string template_name;
  boost::json::object inputs;
  std::optional<std::string> idempotency_key;
  Actor actor;
};

struct CreateResult {
  MissionView mission;
  bool created = false;  // false: the idempotency key named an existing mission
};

struct ListFilter {
  std::optional<std::string> tenant;  // nullopt: every tenant (local administration)
  std::optional<std::string> state;
  std::optional<std::string> template_name;
  std::int64_t limit = 100;
  // The page after this mission (the last one of the previous page), in the same order.
  std::optional<std::string> starting_after;
};

struct MissionOptions {
  std::chrono::milliseconds lease{30000};
  // A step started this many times beyond its max_attempts (workers died under it) fails the
  // mission instead of being started again.
  int max_reclaims = 5;
};

// What the governor and the runner need to know about tools.
struct ToolFacts {
  std::vector<std::string> actuation_tools;
  bool actuates(std::string_view tool) const;
};

class MissionService {
 public:
  MissionService(ledger::SqliteLedger& ledger, std::filesystem::path db_path,
                 const TemplateSet& templates, const Policy& policy, ToolFacts tools,
                 MissionOptions options = {});

  // The governor decides (ALLOW → PENDING, QUARANTINE → QUARANTINED, BLOCK → BLOCKED,
  // RETRY_LATER → RETRY) and the mission is recorded either way, with its reason code.
  CreateResult create(const CreateRequest& request);

  // `tenant` nullopt: any tenant (local administration). Another tenant's mission is not found.
  std::optional<MissionView> get(const std::optional<std::string>& tenant,
                                 const std::string& id) const;
  std::vector<MissionView> list(const ListFilter& filter) const;
  // Whether a worker has anything to do now or soon: a mission PENDING, RUNNING or RETRY — but not
  // one waiting for its tenant's capacity whose next check is not due (it runs once a mission of
  // its tenant ends, which the other work here would have to bring about).
  bool has_work() const;

  // QUARANTINED → PENDING (approver role). `step` approves one step (default: the one held).
  MissionView approve(const std::optional<std::string>& tenant, const std::string& id,
                      const Actor& actor, const std::string& reason);
  // Any non-terminal state → CANCELED (operator role).
  MissionView cancel(const std::optional<std::string>& tenant, const std::string& id,
                     const Actor& actor, const std::string& reason);
  // RETRY → PENDING now; FAILED → PENDING with failed steps reset (operator role).
  MissionView retry(const std::optional<std::string>& tenant, const std::string& id,
                    const Actor& actor, const std::string& reason);
  // Removes the files a finished mission's steps kept (a superseded report's audio), with a
  // `mission.artifacts_released` event naming each file and its digest; the number released (0:
  // none, no event), and their size in `bytes` when given. The mission may not be running: a
  // step could be writing its files.
  std::size_t release_artifacts(const std::string& tenant, const std::string& id,
                                const Actor& actor, const std::string& reason,
                                std::int64_t* bytes = nullptr);
  // Retention (missions.keep_files, `kiln mission prune`): releases the files of every DONE,
  // CANCELED or BLOCKED mission last changed before `before` (ISO 8601 UTC, as the ledger writes
  // times), oldest first, each mission with its own `mission.artifacts_released` event. A FAILED
  // mission keeps its files: a retry may run it on to DONE, its completed steps' files with it.
  // `tenant` nullopt: every tenant. `dry_run`: counts what would go and releases nothing.
  struct Pruned {
    std::size_t missions = 0;
    std::size_t files = 0;
    std::int64_t bytes = 0;
  };
  // `stopping`: asked between missions; true ends the pass there (a server shutting down).
  Pruned prune_files(const std::optional<std::string>& tenant, const std::string& before,
                     const Actor& actor, const std::string& reason, bool dry_run = false,
                     const std::function<bool()>& stopping = {});

  // ---- Worker protocol ----
  struct Claim {
    std::string worker;
    MissionView mission;
    std::string lease_until;
  };
  // Claims the oldest runnable mission (PENDING, RETRY past not_before, or RUNNING with a lapsed
  // lease), or only `only_id` when given.
  std::optional<Claim> claim(const std::string& worker,
                             const std::optional<std::string>& only_id = std::nullopt);
  // Extends the lease; false when the mission is no longer this worker's (canceled, reclaimed).
  bool heartbeat(Claim& claim);
  // Runs one transition of a claimed mission: `events` are appended only while the worker still
  // holds the lease and the mission is RUNNING; otherwise throws MissionError(kLeaseLost).
  // `artifacts` (files of steps whose completion is among `events`) are written in the same
  // transaction, replacing those of the step's earlier runs.
  struct StepFiles {
    std::string step;
    std::vector<Artifact> files;
    std::vector<std::string> sha256;  // of each file, as the step.completed event lists them
  };
  std::vector<ledger::Event> record(const Claim& claim, std::vector<ledger::NewEvent> events,
                                    std::vector<StepFiles> artifacts = {});
  // One file of a mission's step (nullopt when the mission is not the tenant's, or has none by
  // that name).
  std::optional<StoredArtifact> artifact(const std::optional<std::string>& tenant,
                                         const std::string& mission, const std::string& step,
                                         const std::string& name) const;
  // Why a file a mission once kept is gone: "released at TIME (REASON)" from the newest
  // `mission.artifacts_released` event naming it; nullopt when none does. Empty `step` and
  // `name`: any file of a media type starting with `media` (events before media types were
  // listed: a file named speech.*, for "audio/").
  std::optional<std::string> released(const std::optional<std::string>& tenant,
                                      const std::string& mission, const std::string& step,
                                      const std::string& name, std::string_view media = {}) const;

  // An API key's actor ("key:k-…") by the name it was given: "NAME (key:k-…)".
  std::string actor_named(const std::string& actor) const;

  const TemplateSet& templates() const { return templates_; }
  const Policy& policy() const { return policy_; }
  const ToolFacts& tools() const { return tools_; }
  const MissionOptions& options() const { return options_; }
  std::chrono::milliseconds lease() const { return options_.lease; }

  // Ledger event for a transition of mission `m` (payload: id, from, to, reason, actor, extra).
  static ledger::NewEvent transition(const MissionView& m, const std::string& kind,
                                     const std::string& to, const std::string& reason,
                                     const boost::json::object& actor, boost::json::object extra);

 private:
  MissionView act(const std::optional<std::string>& tenant, const std::string& id,
                  const Actor& actor, Role needed, const char* verb,
                  const std::function<ledger::NewEvent(const MissionView&)>& decide);

  ledger::SqliteLedger& ledger_;
  std::filesystem::path db_path_;
  const TemplateSet& templates_;
  const Policy& policy_;
  ToolFacts tools_;
  MissionOptions options_;
};

// Reads one mission (with its steps) through any connection; nullopt when absent.
std::optional<MissionView> load_mission(storage::Connection& c, const std::string& id);

}  // namespace kiln::missions
