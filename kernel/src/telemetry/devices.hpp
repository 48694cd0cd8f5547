// The device key registry: which Ed25519 public key may sign telemetry for which (tenant,
// device). Every change is a ledger event (device.key_added, device.key_rotated,
// device.key_revoked; stream "devices") and the device_keys table is their projection, so
// `kiln ledger replay` rebuilds it. See docs/architecture/telemetry.md.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ledger/ledger.hpp"
#include "missions/service.hpp"
#include "storage/sqlite.hpp"
#include "telemetry/envelope.hpp"

namespace kiln::telemetry {

struct DeviceKey {
  std::string kid;  // 16 hex digits: the first 8 bytes of BLAKE2b-256 of the public key
  std::string tenant;
  std::string device;
  PublicKey public_key{};
  std::string created_at;
  std::string created_by;
  std::optional<std::string> not_after;   // set when rotated: accepted until then
  std::optional<std::string> revoked_at;  // refused from then on
  // "active", "retiring" (rotated, still inside its grace), "expired" or "revoked" at `now`.
  std::string status(const std::string& now) const;
  boost::json::object to_json(const std::string& now) const;
};

// The key id of a public key (DOMAIN §2): 8 bytes of BLAKE2b, as 16 lower-case hex digits.
std::string key_id(const PublicKey& pub);
std::string to_hex(const unsigned char* data, std::size_t n);
// Parses 64 hex digits; nullopt otherwise.
std::optional<PublicKey> parse_public_key(std::string_view hex);
// A public key offered for a device (`kiln devices add --public-key`, POST /v1/devices): 64 hex
// digits that decode to a valid Ed25519 point (not the all-zero key, not a small-order point).
// Throws std::invalid_argument saying which it is not.
PublicKey parse_device_public_key(std::string_view hex);

// A device's secret key as `kiln devices add|rotate` writes it (JSON, mode 0600) and
// `kiln record` reads it: {"tenant", "device", "kid", "secret_key" (128 hex)}.
struct DeviceCredentials {
  std::string tenant;
  std::string device;
  KeyPair key;
  boost::json::object to_json() const;
  static DeviceCredentials from_json(const boost::json::value& v);   // throws std::runtime_error
  void write(const std::filesystem::path& file) const;               // 0600; refuses to overwrite
  static DeviceCredentials read(const std::filesystem::path& file);  // names the file on error
};

class DeviceRegistry {
 public:
  DeviceRegistry(ledger::SqliteLedger& ledger, std::filesystem::path db_path);

  // Registers a public key for a device (the device made its own key pair), or, without one,
  // generates a pair and returns the secret with it. Throws missions::MissionError
  // (invalid_input: bad device name or key; conflict: the key is registered already;
  // forbidden: below operator).
  DeviceCredentials add(const std::string& tenant, const std::string& device,
                        const std::optional<PublicKey>& pub, const missions::Actor& by);
  // A new key for the device; its current keys stay valid for `grace` (overlap while the device
  // switches), then expire.
  DeviceCredentials rotate(const std::string& tenant, const std::string& device,
                           const std::optional<PublicKey>& pub, std::chrono::seconds grace,
                           const missions::Actor& by);
  // Revokes one key (a kid) or every key of a device (a device name).
  std::vector<DeviceKey> revoke(const std::string& tenant, const std::string& kid_or_device,
                                const missions::Actor& by);
  std::vector<DeviceKey> list(const std::optional<std::string>& tenant) const;

  // The key for a kid within a tenant, whatever its status (the caller decides by status);
  // cached for a second, so a revocation by another process takes effect within that time.
  std::optional<DeviceKey> find(const std::string& tenant, const std::string& kid);

 private:
  std::vector<DeviceKey> keys_of(storage::Connection& c, const std::string& tenant,
                                 const std::string& device) const;
  ledger::SqliteLedger& ledger_;
  std::filesystem::path db_path_;
  storage::ReaderPool readers_;  // key lookups on cache misses
  std::mutex mu_;
  struct Cached {
    std::optional<DeviceKey> key;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::pair<std::string, std::string>, Cached> cache_;
};

// Applies device.* events to the device_keys table (registered with the ledger).
void project_devices(storage::Connection& c, const ledger::Event& e);

// Device names: 1-64 of [A-Za-z0-9._-], starting with a letter or digit.
bool valid_device_name(std::string_view name);
// Throws missions::MissionError (forbidden) naming `what` when `by` is below operator.
void require_operator(const missions::Actor& by, const char* what);

}  // namespace kiln::telemetry
