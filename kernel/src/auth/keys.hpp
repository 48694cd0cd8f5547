// API keys: `kiln keys create --tenant T --role R` prints a key once; only its SHA-256 is
// stored. Creation and revocation are ledger events (key.created, key.revoked) and the api_keys
// table is their projection, like the mission tables.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/ledger.hpp"
#include "missions/service.hpp"

namespace kiln::storage {
class Connection;
}

namespace kiln::auth {

// Why `tenant` cannot name a tenant, or nullopt: 1-64 of A-Z a-z 0-9 . _ -, starting with a
// letter or digit — it ends session ids ("…@acme"), metric labels and log lines, where a space,
// quote or line break would read as something else.
std::optional<std::string> tenant_problem(std::string_view tenant);

struct KeyInfo {
  std::string id;  // the public part, "k-" + 12 hex
  std::string tenant;
  missions::Role role = missions::Role::kViewer;
  std::string name;
  std::string created_at;
  std::string created_by;
  std::optional<std::string> revoked_at;
};

struct NewKey {
  KeyInfo info;
  std::string secret;  // the whole key, shown once: "kiln_<id>_<32 hex>"
};

class KeyStore {
 public:
  KeyStore(ledger::SqliteLedger& ledger, std::filesystem::path db_path);
  NewKey create(const std::string& tenant, missions::Role role, const std::string& name,
                const missions::Actor& by);
  KeyInfo revoke(const std::string& id, const missions::Actor& by);
  std::vector<KeyInfo> list(const std::optional<std::string>& tenant) const;
  ~KeyStore();
  // The key's identity, or nullopt when unknown, malformed or revoked. Lookups of keys the
  // database holds are cached for a second, so a revocation takes effect within that time; ids
  // it does not hold are not kept (anyone can present any number of them).
  std::optional<KeyInfo> authenticate(std::string_view key);
  // Key ids in the lookup cache (for tests): never more than the database holds.
  std::size_t cached() const;

 private:
  ledger::SqliteLedger& ledger_;
  std::filesystem::path db_path_;
  mutable std::mutex mu_;
  struct Cached {
    std::optional<KeyInfo> info;
    std::string hash;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Cached> cache_;  // by key id
  std::mutex lookup_mu_;                 // the lookups' one read-only connection
  std::unique_ptr<storage::Connection> lookup_;
};

// Applies key.created / key.revoked to the api_keys table (registered with the ledger).
void project_keys(storage::Connection& c, const ledger::Event& e);

// An actor as a person reads it: an API key by the name it was given ("me-approver
// (key:k-…)"); anything else, or a key the database does not hold, as it is.
std::string actor_named(storage::Connection& c, const std::string& actor);
std::string actor_named(const std::filesystem::path& db, const std::string& actor);

}  // namespace kiln::auth
