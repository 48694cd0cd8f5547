// The roast profile library: named profiles of a tenant, each save a new immutable version, a
// name archived or restored as a whole, and the profile each device roasts to. Every change is a
// ledger event (profile.saved, profile.archived, profile.restored, profile.assigned; stream
// "profiles") and the tables are their projection, so `kiln ledger replay` rebuilds them.
// The body is the roast plugin's profile JSON (`roast.profile_import` makes it from an Artisan
// .alog, `roast.profile_export` writes one back); the kernel keeps it as it is and reads only
// what sessions need: `targets` (QC) and `phases` (phase temperatures). See
// docs/architecture/roast.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "ledger/ledger.hpp"
#include "missions/service.hpp"
#include "telemetry/devices.hpp"

namespace kiln::storage {
class Connection;
}

namespace kiln::telemetry {

struct ProfileInfo {
  std::string tenant;
  std::string name;
  std::int64_t version = 0;
  std::int64_t latest = 0;  // the name's newest version
  std::string title;
  std::string created_at;
  std::string created_by;
  std::optional<std::string> archived_at;
  boost::json::object body;  // empty in listings
  // From ProfileStore::save: the body and title were the newest version's already (a repeated
  // save), and nothing was saved.
  bool unchanged = false;
  boost::json::object to_json(bool with_body) const;
};

// "name" or "name@version" (version >= 1).
struct ProfileRef {
  std::string name;
  std::optional<std::int64_t> version;
  static ProfileRef parse(const std::string& text);  // throws MissionError (invalid_input)
};

class ProfileStore {
 public:
  ProfileStore(ledger::SqliteLedger& ledger, std::filesystem::path db_path);

  // Saves `body` as the next version of `name` (version 1 for a new name; an archived name is
  // restored by a save). The same body and title as the newest version of a name not archived
  // save nothing: that version, `unchanged`. Throws missions::MissionError: invalid_input (a bad
  // name, a body that is not a profile), forbidden (below operator).
  ProfileInfo save(const std::string& tenant, const std::string& name, boost::json::object body,
                   const missions::Actor& by);
  // Archives (hidden from listings, not assignable) or restores a name with all its versions.
  // not_found for an unknown name.
  ProfileInfo set_archived(const std::string& tenant, const std::string& name, bool archived,
                           const missions::Actor& by);
  // The profile a device roasts to from now on ("name" or "name@version"; nullopt clears it).
  // Sessions opened on the device record it, pinned to the version current when it opens.
  void assign(const std::string& tenant, const std::string& device,
              const std::optional<std::string>& profile, const missions::Actor& by);

  // Newest version of each name, without bodies, by name.
  static std::vector<ProfileInfo> list(const std::filesystem::path& db, const std::string& tenant,
                                       bool include_archived);
  // One version (the newest without one), with its body.
  static std::optional<ProfileInfo> get(const std::filesystem::path& db, const std::string& tenant,
                                        const std::string& name,
                                        std::optional<std::int64_t> version = std::nullopt);
  static std::vector<ProfileInfo> versions(const std::filesystem::path& db,
                                           const std::string& tenant, const std::string& name);
  // "no profile 'jigesa' in tenant default (did you mean 'Jigesa'? ...)": the message for a name
  // (and version) that is not there, naming a name that differs only in case; else ending with
  // `hint` (default: `kiln profiles list`).
  static std::string not_found(storage::Connection& c, const std::string& tenant,
                               const std::string& name,
                               std::optional<std::int64_t> version = std::nullopt,
                               const std::string& hint = {});
  static std::string not_found(const std::filesystem::path& db, const std::string& tenant,
                               const std::string& name,
                               std::optional<std::int64_t> version = std::nullopt,
                               const std::string& hint = {});
  // The device's assignment as stored ("name" or "name@version"), if any.
  static std::optional<std::string> assigned(storage::Connection& c, const std::string& tenant,
                                             const std::string& device);
  // Device keys as GET /v1/devices and `kiln devices list --json` give them: each with the
  // profile its device roasts to (null for none).
  static boost::json::array with_profiles(const std::filesystem::path& db,
                                          const std::vector<DeviceKey>& keys);
  // Resolves an assignment to (name, version) with the version current now; nullopt when the
  // name is gone or archived.
  static std::optional<std::pair<std::string, std::int64_t>> resolve(storage::Connection& c,
                                                                     const std::string& tenant,
                                                                     const std::string& ref);

 private:
  ledger::SqliteLedger& ledger_;
  std::filesystem::path db_path_;
};

// Applies profile.* events to the profile tables (registered with the ledger).
void project_profiles(storage::Connection& c, const ledger::Event& e);

}  // namespace kiln::telemetry
