#include "auth/keys.hpp"

#include <sodium.h>

#include <cctype>

#include "common/sha256.hpp"
#include "storage/sqlite.hpp"

namespace kiln::auth {
namespace json = boost::json;
using storage::Connection;

namespace {

std::string random_hex(std::size_t bytes) {
  common::ensure_sodium();  // randombytes_buf needs sodium_init first
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

KeyInfo row(const storage::Statement& st) {
  KeyInfo k;
  k.id = st.text(0);
  k.tenant = st.text(1);
  // A role this build does not know (written by a newer one) gets the least.
  k.role = missions::parse_role(st.text(2)).value_or(missions::Role::kRecorder);
  k.name = st.text(3);
  k.created_at = st.text(4);
  k.created_by = st.text(5);
  if (!st.is_null(6)) k.revoked_at = st.text(6);
  return k;
}

constexpr const char* kColumns = "id, tenant, role, name, created_at, created_by, revoked_at";

}  // namespace

void project_keys(Connection& c, const ledger::Event& e) {
  if (e.kind != "key.created" && e.kind != "key.revoked") return;
  auto v = json::parse(e.payload);
  const auto& p = v.as_object();
  if (e.kind == "key.created") {
    auto st = c.prepare(
        "INSERT INTO api_keys (id, tenant, role, name, hash, created_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)");
    st.bind(1, std::string(p.at("id").as_string())).bind(2, e.tenant);
    st.bind(3, std::string(p.at("role").as_string()))
        .bind(4, std::string(p.at("name").as_string()));
    st.bind(5, std::string(p.at("hash").as_string())).bind(6, e.time);
    st.bind(7, std::string(p.at("actor").at("name").as_string()));
    st.step();
  } else {
    auto st = c.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
    st.bind(1, e.time).bind(2, std::string(p.at("id").as_string()));
    st.step();
  }
}

KeyStore::KeyStore(ledger::SqliteLedger& ledger, std::filesystem::path db_path)
    : ledger_(ledger), db_path_(std::move(db_path)) {}

std::optional<std::string> tenant_problem(std::string_view tenant) {
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  bool ok = !tenant.empty() && tenant.size() <= 64 && alnum(tenant.front());
  for (const char c : tenant) ok = ok && (alnum(c) || c == '.' || c == '_' || c == '-');
  if (ok) return std::nullopt;
  std::string shown;
  for (const char c : tenant) shown += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  return "tenant '" + shown +
         "' is not valid: use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit";
}

NewKey KeyStore::create(const std::string& tenant, missions::Role role, const std::string& name,
                        const missions::Actor& by) {
  if (by.role < missions::Role::kAdmin)
    throw missions::MissionError(missions::MissionError::Code::kForbidden,
                                 "creating API keys needs the admin role");
  if (auto problem = tenant_problem(tenant))
    throw missions::MissionError(missions::MissionError::Code::kInvalidInput, *problem);
  NewKey k;
  k.info.id = "k-" + random_hex(6);
  k.info.tenant = tenant;
  k.info.role = role;
  k.info.name = name;
  k.secret = "kiln_" + k.info.id + "_" + random_hex(16);
  // A command (own savepoint): should the projection refuse it, only this key is taken back.
  auto events = ledger_.execute([&](Connection&) -> std::vector<ledger::NewEvent> {
    return {ledger::NewEvent{tenant, "keys", "key.created",
                             json::object{{"id", k.info.id},
                                          {"role", std::string(missions::to_string(role))},
                                          {"name", name},
                                          {"hash", common::sha256_hex(k.secret)},
                                          {"actor", by.to_json()}}}};
  });
  k.info.created_at = events.front().time;
  k.info.created_by = by.name;
  return k;
}

KeyInfo KeyStore::revoke(const std::string& id, const missions::Actor& by) {
  if (by.role < missions::Role::kAdmin)
    throw missions::MissionError(missions::MissionError::Code::kForbidden,
                                 "revoking API keys needs the admin role");
  ledger_.execute([&](Connection& c) -> std::vector<ledger::NewEvent> {
    auto st = c.prepare(std::string("SELECT ") + kColumns + " FROM api_keys WHERE id = ?");
    st.bind(1, id);
    if (!st.step())
      throw missions::MissionError(missions::MissionError::Code::kNotFound,
                                   "no API key " + id + " (kiln keys list shows them)");
    auto k = row(st);
    if (k.revoked_at)
      throw missions::MissionError(missions::MissionError::Code::kInvalidState,
                                   "API key " + id + " was already revoked at " + *k.revoked_at);
    return {ledger::NewEvent{k.tenant, "keys", "key.revoked",
                             json::object{{"id", id}, {"actor", by.to_json()}}}};
  });
  {
    std::lock_guard lock(mu_);
    cache_.erase(id);
  }
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns + " FROM api_keys WHERE id = ?");
  st.bind(1, id);
  st.step();
  return row(st);
}

std::vector<KeyInfo> KeyStore::list(const std::optional<std::string>& tenant) const {
  Connection c(db_path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(std::string("SELECT ") + kColumns + " FROM api_keys" +
                      (tenant ? " WHERE tenant = ?" : "") + " ORDER BY created_at, id");
  if (tenant) st.bind(1, *tenant);
  std::vector<KeyInfo> out;
  while (st.step()) out.push_back(row(st));
  return out;
}

KeyStore::~KeyStore() = default;

std::size_t KeyStore::cached() const {
  std::lock_guard lock(mu_);
  return cache_.size();
}

std::optional<KeyInfo> KeyStore::authenticate(std::string_view key) {
  // kiln_k-<12 hex>_<32 hex>
  if (key.size() != 5 + 14 + 1 + 32 || key.substr(0, 5) != "kiln_" || key[19] != '_' ||
      key.substr(5, 2) != "k-")
    return std::nullopt;
  const std::string id(key.substr(5, 14));
  const std::string hash = common::sha256_hex(key);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(id);
    if (it != cache_.end() && now - it->second.at < std::chrono::seconds(1)) {
      if (!it->second.info || it->second.hash.size() != hash.size() ||
          sodium_memcmp(it->second.hash.data(), hash.data(), hash.size()) != 0)
        return std::nullopt;
      return it->second.info;
    }
  }
  Cached c{std::nullopt, "", now};
  bool known = false;
  {
    std::lock_guard lock(lookup_mu_);
    if (!lookup_) lookup_ = std::make_unique<Connection>(db_path_, Connection::Mode::kReadOnly);
    auto& st =
        lookup_->cached(std::string("SELECT ") + kColumns + ", hash FROM api_keys WHERE id = ?");
    st.bind(1, id);
    if (st.step()) {
      known = true;
      auto k = row(st);
      c.hash = st.text(7);
      if (!k.revoked_at) c.info = std::move(k);
    }
    st.reset();  // ends the read: a kept statement would pin the WAL
  }
  std::lock_guard lock(mu_);
  if (known)
    cache_[id] = c;
  else
    cache_.erase(id);
  if (!c.info || c.hash.size() != hash.size() ||
      sodium_memcmp(c.hash.data(), hash.data(), hash.size()) != 0)
    return std::nullopt;
  return c.info;
}

std::string actor_named(storage::Connection& c, const std::string& actor) {
  if (actor.rfind("key:", 0) != 0) return actor;
  auto key = c.prepare("SELECT name FROM api_keys WHERE id = ?");
  key.bind(1, actor.substr(4));
  return key.step() && !key.text(0).empty() ? key.text(0) + " (" + actor + ")" : actor;
}

std::string actor_named(const std::filesystem::path& db, const std::string& actor) {
  if (actor.rfind("key:", 0) != 0) return actor;
  storage::Connection c(db, storage::Connection::Mode::kReadOnly);
  return actor_named(c, actor);
}

}  // namespace kiln::auth
