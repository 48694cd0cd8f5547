#include "telemetry/devices.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "auth/keys.hpp"
#include "common/files.hpp"
#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "storage/sqlite.hpp"

namespace kiln::telemetry {
namespace json = boost::json;
using missions::MissionError;
using storage::Connection;

namespace {

constexpr const char* kColumns =
    "kid, tenant, device, public_key, created_at, created_by, not_after, revoked_at";

DeviceKey row(const storage::Statement& st) {
  DeviceKey k;
  k.kid = st.text(0);
  k.tenant = st.text(1);
  k.device = st.text(2);
  if (auto pub = parse_public_key(st.text(3))) k.public_key = *pub;
  k.created_at = st.text(4);
  k.created_by = st.text(5);
  if (!st.is_null(6)) k.not_after = st.text(6);
  if (!st.is_null(7)) k.revoked_at = st.text(7);
  return k;
}

std::optional<std::vector<unsigned char>> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::vector<unsigned char> out(hex.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return out;
}

void check_names(const std::string& tenant, const std::string& device) {
  if (auto problem = auth::tenant_problem(tenant))
    throw MissionError(MissionError::Code::kInvalidInput, *problem);
  if (!valid_device_name(device))
    throw MissionError(MissionError::Code::kInvalidInput,
                       "device name '" + device +
                           "' is not valid: use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter "
                           "or digit");
}

// A key serves one device of a tenant: refuses a kid the tenant registered already. Another
// tenant's registrations are not looked at, so none can block this one by registering its
// public key first (migration 15).
void refuse_registered(Connection& c, const std::string& tenant, const std::string& kid) {
  auto st = c.prepare("SELECT device FROM device_keys WHERE tenant = ? AND kid = ?");
  st.bind(1, tenant).bind(2, kid);
  if (st.step())
    throw MissionError(MissionError::Code::kConflict,
                       "key " + kid + " is registered already, for device " + st.text(0) +
                           "; a device needs a key of its own");
}

}  // namespace

void require_operator(const missions::Actor& by, const char* what) {
  if (by.role < missions::Role::kOperator)
    throw MissionError(MissionError::Code::kForbidden,
                       std::string(what) + " needs the operator role or above");
}

bool valid_device_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return false;
  }
  return true;
}

std::string to_hex(const unsigned char* data, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

std::string key_id(const PublicKey& pub) {
  common::ensure_sodium();
  unsigned char h[32];
  crypto_generichash(h, sizeof h, pub.data(), pub.size(), nullptr, 0);
  return to_hex(h, 8);
}

std::optional<PublicKey> parse_public_key(std::string_view hex) {
  auto bytes = from_hex(hex);
  if (!bytes || bytes->size() != 32) return std::nullopt;
  PublicKey k{};
  std::copy(bytes->begin(), bytes->end(), k.begin());
  return k;
}

PublicKey parse_device_public_key(std::string_view hex) {
  auto k = parse_public_key(hex);
  if (!k)
    throw std::invalid_argument(
        "a public key is 64 hex digits (the device's 32-byte Ed25519 "
        "public key), not " +
        std::to_string(hex.size()) + " characters of that");
  if (crypto_core_ed25519_is_valid_point(k->data()) != 1)
    throw std::invalid_argument(
        "the public key is not a usable Ed25519 public key (not a point of the curve, or one of "
        "small order such as all zeros); export it again from the device");
  return *k;
}

std::string DeviceKey::status(const std::string& now) const {
  if (revoked_at) return "revoked";
  if (not_after) return *not_after < now ? "expired" : "retiring";
  return "active";
}

json::object DeviceKey::to_json(const std::string& now) const {
  return {{"kid", kid},
          {"tenant", tenant},
          {"device", device},
          {"public_key", to_hex(public_key.data(), public_key.size())},
          {"status", status(now)},
          {"created_at", created_at},
          {"created_by", created_by},
          {"not_after", not_after ? json::value(*not_after) : json::value(nullptr)},
          {"revoked_at", revoked_at ? json::value(*revoked_at) : json::value(nullptr)}};
}

// ---- Credentials file ---------------------------------------------------------------------------

json::object DeviceCredentials::to_json() const {
  return {{"tenant", tenant},
          {"device", device},
          {"kid", key.kid},
          {"public_key", to_hex(key.pub.data(), key.pub.size())},
          {"secret_key", to_hex(key.secret.data(), key.secret.size())}};
}

DeviceCredentials DeviceCredentials::from_json(const json::value& v) {
  DeviceCredentials c;
  try {
    const auto& o = v.as_object();
    c.tenant = std::string(o.at("tenant").as_string());
    c.device = std::string(o.at("device").as_string());
    c.key.kid = std::string(o.at("kid").as_string());
    auto secret = from_hex(std::string(o.at("secret_key").as_string()));
    if (!secret || secret->size() != c.key.secret.size())
      throw std::runtime_error("secret_key is not 128 hex digits");
    std::copy(secret->begin(), secret->end(), c.key.secret.begin());
    // libsodium's Ed25519 secret key is seed || public key.
    std::copy(c.key.secret.begin() + 32, c.key.secret.end(), c.key.pub.begin());
    if (key_id(c.key.pub) != c.key.kid)
      throw std::runtime_error("kid " + c.key.kid + " does not belong to this key");
  } catch (const std::runtime_error&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("not a device credentials object: ") + e.what());
  }
  return c;
}

void DeviceCredentials::write(const std::filesystem::path& file) const {
  if (std::filesystem::exists(std::filesystem::symlink_status(file)))
    throw std::runtime_error(file.string() +
                             " exists; a device key is never overwritten (choose another "
                             "--key-out, or remove the old file once it is not needed)");
  // Never through a link, nor over a file that appears meanwhile.
  common::write_new_file(file, json::serialize(to_json()) + "\n", 0600);
}

DeviceCredentials DeviceCredentials::read(const std::filesystem::path& file) {
  // A secret every user of the machine may read signs readings for anyone (ssh refuses such a
  // key too); a group may read it (a service's).
  namespace fs = std::filesystem;
  std::error_code stat_error;
  const auto perms = fs::status(file, stat_error).permissions();
  if (!stat_error &&
      (perms & (fs::perms::others_read | fs::perms::others_write)) != fs::perms::none)
    throw std::runtime_error("device key " + file.string() +
                             " may be read or written by every user of this machine, who could "
                             "then sign readings as its device; `chmod 600 " +
                             file.string() + "` (640 for a group) and retry");
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read device key " + file.string() +
                             " (`kiln devices add` writes it)");
  std::stringstream s;
  s << in.rdbuf();
  json::error_code ec;
  auto v = json::parse(s.str(), ec);
  if (ec)
    throw std::runtime_error(file.string() + " is not a device key file (not JSON: " +
                             ec.message() + "); `kiln devices add DEVICE` writes one");
  try {
    return from_json(v);
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + " is not a device key file (" + e.what() +
                             "); `kiln devices add DEVICE` writes one");
  }
}

// ---- Projection ---------------------------------------------------------------------------------

void project_devices(Connection& c, const ledger::Event& e) {
  if (e.kind.rfind("device.", 0) != 0) return;
  auto v = json::parse(e.payload);
  const auto& p = v.as_object();
  if (e.kind == "device.key_added" || e.kind == "device.key_rotated") {
    if (e.kind == "device.key_rotated") {
      // Every older key ends at the new grace's end at the latest: one still in an earlier
      // rotation's grace is not kept longer than the device's newest decision says.
      auto st = c.prepare(
          "UPDATE device_keys SET not_after = CASE WHEN not_after IS NULL OR not_after > ?1 "
          "THEN ?1 ELSE not_after END WHERE tenant = ?2 AND device = ?3 AND revoked_at IS NULL");
      st.bind(1, std::string(p.at("old_keys_until").as_string()))
          .bind(2, e.tenant)
          .bind(3, std::string(p.at("device").as_string()));
      st.step();
    }
    auto st = c.prepare(
        "INSERT INTO device_keys (kid, tenant, device, public_key, created_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    st.bind(1, std::string(p.at("kid").as_string())).bind(2, e.tenant);
    st.bind(3, std::string(p.at("device").as_string()))
        .bind(4, std::string(p.at("public_key").as_string()));
    st.bind(5, e.time).bind(6, std::string(p.at("actor").at("name").as_string()));
    st.step();
  } else if (e.kind == "device.key_revoked") {
    auto st = c.prepare(
        "UPDATE device_keys SET revoked_at = ? WHERE tenant = ? AND kid = ? AND revoked_at IS "
        "NULL");
    st.bind(1, e.time).bind(2, e.tenant).bind(3, std::string(p.at("kid").as_string()));
    st.step();
  }
}

// ---- Registry -----------------------------------------------------------------------------------

DeviceRegistry::DeviceRegistry(ledger::SqliteLedger& ledger, std::filesystem::path db_path)
    : ledger_(ledger), db_path_(std::move(db_path)), readers_(db_path_) {}

std::vector<DeviceKey> DeviceRegistry::keys_of(Connection& c, const std::string& tenant,
                                               const std::string& device) const {
  auto st = c.prepare(std::string("SELECT ") + kColumns +
                      " FROM device_keys WHERE tenant = ? AND device = ? ORDER BY created_at");
  st.bind(1, tenant).bind(2, device);
  std::vector<DeviceKey> out;
  while (st.step()) out.push_back(row(st));
  return out;
}

DeviceCredentials DeviceRegistry::add(const std::string& tenant, const std::string& device,
                                      const std::optional<PublicKey>& pub,
                                      const missions::Actor& by) {
  require_operator(by, "adding a device");
  check_names(tenant, device);
  DeviceCredentials cred;
  cred.tenant = tenant;
  cred.device = device;
  if (pub) {
    cred.key.pub = *pub;
  } else {
    cred.key = generate_key("");
  }
  cred.key.kid = key_id(cred.key.pub);
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    refuse_registered(c, tenant, cred.key.kid);
    for (const auto& k : keys_of(c, tenant, device))
      if (!k.revoked_at && !k.not_after)
        throw MissionError(MissionError::Code::kConflict,
                           "device " + device + " has an active key (" + k.kid +
                               "); rotate it for a new one (POST /v1/devices/" + device +
                               ":rotate, `kiln devices rotate " + device + "`)");
    return {ledger::NewEvent{
        tenant, "devices", "device.key_added",
        json::object{{"kid", cred.key.kid},
                     {"device", device},
                     {"public_key", to_hex(cred.key.pub.data(), cred.key.pub.size())},
                     {"actor", by.to_json()}}}};
  });
  {
    std::lock_guard lock(mu_);
    cache_.clear();  // a lookup of this kid may have been cached as unknown
  }
  if (pub) cred.key.secret = {};
  return cred;
}

DeviceCredentials DeviceRegistry::rotate(const std::string& tenant, const std::string& device,
                                         const std::optional<PublicKey>& pub,
                                         std::chrono::seconds grace, const missions::Actor& by) {
  require_operator(by, "rotating a device key");
  check_names(tenant, device);
  DeviceCredentials cred;
  cred.tenant = tenant;
  cred.device = device;
  if (pub)
    cred.key.pub = *pub;
  else
    cred.key = generate_key("");
  cred.key.kid = key_id(cred.key.pub);
  const std::string until = ledger::utc_millis(std::chrono::system_clock::now() +
                                               std::max(grace, std::chrono::seconds(0)));
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    refuse_registered(c, tenant, cred.key.kid);
    bool any = false;
    for (const auto& k : keys_of(c, tenant, device)) any = any || !k.revoked_at;
    if (!any)
      throw MissionError(
          MissionError::Code::kNotFound,
          "device " + device + " has no key in tenant " + tenant +
              " to rotate; register one first (POST /v1/devices, `kiln devices add " + device +
              "`)");
    return {ledger::NewEvent{
        tenant, "devices", "device.key_rotated",
        json::object{{"kid", cred.key.kid},
                     {"device", device},
                     {"public_key", to_hex(cred.key.pub.data(), cred.key.pub.size())},
                     {"old_keys_until", until},
                     {"actor", by.to_json()}}}};
  });
  std::lock_guard lock(mu_);
  cache_.clear();
  if (pub) cred.key.secret = {};
  return cred;
}

std::vector<DeviceKey> DeviceRegistry::revoke(const std::string& tenant,
                                              const std::string& kid_or_device,
                                              const missions::Actor& by) {
  require_operator(by, "revoking a device key");
  std::vector<std::string> kids;
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    kids.clear();
    // Key ids are lower-case hex; one typed in capitals (copied from elsewhere) is the same key.
    auto st = c.prepare(std::string("SELECT ") + kColumns +
                        " FROM device_keys WHERE tenant = ? AND (kid = lower(?) OR device = ?)");
    st.bind(1, tenant).bind(2, kid_or_device).bind(3, kid_or_device);
    bool found = false, named_device = false;
    std::string revoked_at;  // of a key named by its id, revoked already
    std::vector<ledger::NewEvent> events;
    while (st.step()) {
      found = true;
      auto k = row(st);
      named_device = named_device || k.device == kid_or_device;
      if (k.revoked_at) {
        revoked_at = *k.revoked_at;
        continue;
      }
      kids.push_back(k.kid);
      events.push_back(ledger::NewEvent{
          tenant, "devices", "device.key_revoked",
          json::object{{"kid", k.kid}, {"device", k.device}, {"actor", by.to_json()}}});
    }
    if (!found)
      throw MissionError(MissionError::Code::kNotFound,
                         "no device or key '" + kid_or_device + "' in tenant " + tenant +
                             " (a key belongs to one tenant; GET /v1/devices or `kiln devices "
                             "list` shows this one's)");
    if (events.empty())
      throw MissionError(MissionError::Code::kInvalidState,
                         named_device
                             ? "every key of device '" + kid_or_device + "' is revoked already"
                             : "device key " + common::to_lower(kid_or_device) +
                                   " is revoked already (at " + revoked_at + ")");
    return events;
  });
  {
    std::lock_guard lock(mu_);
    cache_.clear();
  }
  std::vector<DeviceKey> out;
  Connection c(db_path_, Connection::Mode::kReadOnly);
  for (const auto& kid : kids) {
    auto st = c.prepare(std::string("SELECT ") + kColumns +
                        " FROM device_keys WHERE tenant = ? AND kid = ?");
    st.bind(1, tenant).bind(2, kid);
    if (st.step()) out.push_back(row(st));
  }
  return out;
}

std::vector<DeviceKey> DeviceRegistry::list(const std::optional<std::string>& tenant) const {
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns + " FROM device_keys" +
                      (tenant ? " WHERE tenant = ?" : "") + " ORDER BY tenant, device, created_at");
  if (tenant) st.bind(1, *tenant);
  std::vector<DeviceKey> out;
  while (st.step()) out.push_back(row(st));
  return out;
}

std::optional<DeviceKey> DeviceRegistry::find(const std::string& tenant, const std::string& kid) {
  const auto now = std::chrono::steady_clock::now();
  const auto id = std::make_pair(tenant, kid);
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(id);
    if (it != cache_.end() && now - it->second.at < std::chrono::seconds(1)) return it->second.key;
  }
  Cached c{std::nullopt, now};
  {
    auto conn = readers_.acquire();
    auto& st = conn->cached(std::string("SELECT ") + kColumns +
                            " FROM device_keys WHERE tenant = ? AND kid = ?");
    st.bind(1, tenant).bind(2, kid);
    if (st.step()) c.key = row(st);
    st.reset();  // no read transaction left open on a kept connection
  }
  std::lock_guard lock(mu_);
  if (cache_.size() > 10000) cache_.clear();  // bounded: unknown kids from a flood
  cache_[id] = c;
  return c.key;
}

}  // namespace kiln::telemetry
