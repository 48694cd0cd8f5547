// The mission tables as a projection of the ledger. `project` is registered with the ledger
// (applied to every event inside its transaction) and is the only code that writes the mission
// tables; `replay` applies it to the ledger alone in a scratch database and compares the result
// with the live tables (`kiln ledger replay`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ledger/ledger.hpp"

namespace kiln::storage {
class Connection;
}

namespace kiln::missions {

// Applies one ledger event to the mission tables; other events are ignored.
// Throws std::runtime_error for a mission event that does not fit the tables (a corrupt ledger).
void project(storage::Connection& c, const ledger::Event& e);

struct ReplayReport {
  std::filesystem::path scratch;
  std::int64_t events = 0;  // ledger events read
  // of which projected: mission, step, key, device, session and profile events
  std::int64_t mission_events = 0;
  std::int64_t missions = 0;             // missions rebuilt
  std::vector<std::string> differences;  // "mission m-…: state: live DONE, replayed FAILED"
  bool ok() const { return differences.empty(); }
};

// Rebuilds the tables that are projections of the ledger (missions, mission_steps, api_keys,
// device_keys, telemetry_sessions, profiles, profile_names, device_profiles) from the ledger of
// `db_path` into `scratch` (created fresh, kept for inspection) and diffs every column.
ReplayReport replay(const std::filesystem::path& db_path, const std::filesystem::path& scratch,
                    std::size_t max_differences = 50);

}  // namespace kiln::missions
