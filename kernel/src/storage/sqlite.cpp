#include "storage/sqlite.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <exception>

#include <spdlog/spdlog.h>

namespace kiln::storage {

namespace {

// Process-wide settings, before SQLite initialises itself (at the first open). Memory statistics
// off: with them on, every allocation inside SQLite takes one global mutex, which all writer and
// reader threads share. sqlite3_config refuses (SQLITE_MISUSE) once SQLite is initialised, for
// example by a plugin that opened a database first; SQLite then keeps its defaults, which are
// correct, only slower.
void configure_sqlite_once() {
  static const int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)rc;
}

}  // namespace

Connection::Connection(const std::filesystem::path& path, Mode mode, int busy_timeout_ms)
    : path_(path) {
  configure_sqlite_once();
  if (mode == Mode::kReadWrite && path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      throw StorageError("cannot create " + path.parent_path().string() + ": " + ec.message() +
                             "; set storage.path to a writable location",
                         SQLITE_CANTOPEN);
  }
  // A new database is readable by its owner and group only (0640, whatever the umask allows
  // on top): it holds the ledger, API key hashes and device keys. SQLite gives its -wal and -shm
  // files the database file's mode, and an empty file is a new database to it.
  if (mode == Mode::kReadWrite && !std::filesystem::exists(path)) {
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
    if (fd >= 0) ::close(fd);  // else: another process made it, or SQLite reports why below
  }
  int flags =
      mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw StorageError("cannot open database " + path.string() + ": " + msg +
                           (mode == Mode::kReadOnly ? " (does it exist? `kiln serve` creates it)"
                                                    : "; check storage.path and permissions"),
                       rc);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  if (mode == Mode::kReadWrite) {
    exec("PRAGMA journal_mode=WAL");
    // Savepoint (statement) journals in memory: past 64 KiB of changes SQLite would otherwise
    // spill one to a temporary file, created, written and closed for every savepoint (a
    // telemetry store command of a few dozen batches passes that).
    exec("PRAGMA temp_store=MEMORY");
    // 32 MiB of page cache instead of 2: the telemetry inbox's move reads back a few MB it wrote
    // seconds before, and a large group should not spill dirty pages mid-transaction.
    exec("PRAGMA cache_size=-32768");
  }
  exec("PRAGMA synchronous=FULL");
  exec("PRAGMA foreign_keys=ON");
}

Connection::~Connection() {
  cache_.clear();  // finalize the cached statements before the connection closes
  if (db_) sqlite3_close_v2(db_);
}

ReaderPool::Lease::~Lease() {
  if (!c_ || std::uncaught_exceptions() > exceptions_) return;
  std::lock_guard lock(pool_.mu_);
  if (pool_.idle_.size() < pool_.keep_) pool_.idle_.push_back(std::move(c_));
}

ReaderPool::Lease ReaderPool::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(c));
    }
  }
  return Lease(*this, std::make_unique<Connection>(path_, Connection::Mode::kReadOnly));
}

Statement& Connection::cached(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) it = cache_.emplace(sql, std::make_unique<Statement>(*this, sql)).first;
  it->second->reset();
  return *it->second;
}

void Connection::fail(const std::string& what, int rc) const {
  throw StorageError("database " + path_.string() + ": " + what + ": " +
                         (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)),
                     rc);
}

void Connection::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw StorageError("database " + path_.string() + ": " + msg + " (in: " + s.substr(0, 80) + ")",
                       rc);
  }
}

Statement Connection::prepare(std::string_view sql) {
  return Statement(*this, sql);
}

bool Connection::read_only() const {
  return sqlite3_db_readonly(db_, "main") == 1;
}

std::int64_t Connection::changes() const {
  return sqlite3_changes64(db_);
}

std::int64_t Connection::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

Statement::Statement(Connection& c, std::string_view sql) : c_(&c), sql_(sql) {
  int rc = sqlite3_prepare_v2(c.raw(), sql_.c_str(), static_cast<int>(sql_.size()), &s_, nullptr);
  if (rc != SQLITE_OK) c.fail("cannot prepare '" + sql_.substr(0, 80) + "'", rc);
}

Statement::~Statement() {
  if (s_) sqlite3_finalize(s_);
}

Statement::Statement(Statement&& o) noexcept : c_(o.c_), s_(o.s_), sql_(std::move(o.sql_)) {
  o.s_ = nullptr;
}

Statement& Statement::bind(int i, std::int64_t v) {
  if (int rc = sqlite3_bind_int64(s_, i, v); rc != SQLITE_OK) c_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind(int i, std::string_view v) {
  if (int rc = sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
      rc != SQLITE_OK)
    c_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind_real(int i, double v) {
  if (int rc = sqlite3_bind_double(s_, i, v); rc != SQLITE_OK) c_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind_null(int i) {
  if (int rc = sqlite3_bind_null(s_, i); rc != SQLITE_OK) c_->fail("bind", rc);
  return *this;
}

Statement& Statement::bind_blob(int i, std::string_view bytes) {
  if (int rc =
          sqlite3_bind_blob(s_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
      rc != SQLITE_OK)
    c_->fail("bind", rc);
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  c_->fail("cannot run '" + sql_.substr(0, 80) + "'", rc);
}

void Statement::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

std::int64_t Statement::int64(int col) const {
  return sqlite3_column_int64(s_, col);
}

double Statement::real(int col) const {
  return sqlite3_column_double(s_, col);
}

std::string Statement::text(int col) const {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
           : std::string();
}

std::string Statement::blob(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, col));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
           : std::string();
}

int Statement::column_count() const {
  return sqlite3_column_count(s_);
}

std::string Statement::column_name(int col) const {
  const char* n = sqlite3_column_name(s_, col);
  return n ? n : "";
}

bool Statement::is_null(int col) const {
  return sqlite3_column_type(s_, col) == SQLITE_NULL;
}

Transaction::Transaction(Connection& c) : c_(c) {
  c_.exec("BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
  if (!done_) {
    try {
      c_.exec("ROLLBACK");
    } catch (...) {
      // The connection reports the original error; a failed rollback adds nothing useful.
    }
  }
}

void Transaction::commit() {
  c_.exec("COMMIT");
  done_ = true;
}

MigrationStatus migration_status(Connection& c) {
  MigrationStatus s;
  auto exists =
      c.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  if (!exists.step()) return s;  // a new, empty database
  auto st = c.prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version");
  while (st.step()) {
    s.applied.emplace_back(static_cast<int>(st.int64(0)), st.text(1));
    s.version = static_cast<int>(st.int64(0));
  }
  return s;
}

MigrationStatus migrate(Connection& c, const std::vector<Migration>& migrations) {
  c.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT "
      "NULL, applied_at TEXT NOT NULL)");
  auto status = migration_status(c);
  int newest = migrations.empty() ? 0 : migrations.back().version;
  if (status.version > newest)
    throw StorageError("database " + c.path().string() + " has schema version " +
                           std::to_string(status.version) + " but this kiln knows only up to " +
                           std::to_string(newest) + "; run a newer kiln or restore a backup",
                       SQLITE_MISMATCH);
  if (status.version > 0 && status.version < newest)
    spdlog::warn("database {}: migrating schema version {} to {} (`kiln db status` lists them)",
                 c.path().string(), status.version, newest);
  for (const auto& m : migrations) {
    if (m.version <= status.version) continue;
    Transaction tx(c);
    c.exec(m.sql);
    c.prepare(
         "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, "
         "strftime('%Y-%m-%dT%H:%M:%fZ','now'))")
        .bind(1, static_cast<std::int64_t>(m.version))
        .bind(2, m.name)
        .step();
    tx.commit();
  }
  return migration_status(c);
}

}  // namespace kiln::storage
