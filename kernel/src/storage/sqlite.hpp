// A thin RAII layer over SQLite: connections, prepared statements, transactions, migrations.
// Every error is a StorageError naming the database file and the statement that failed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace kiln::storage {

class StorageError : public std::runtime_error {
 public:
  StorageError(const std::string& message, int sqlite_code)
      : std::runtime_error(message), code_(sqlite_code) {}
  int sqlite_code() const { return code_; }

 private:
  int code_;
};

class Statement;

class Connection {
 public:
  enum class Mode { kReadWrite, kReadOnly };
  // Opens (creating it and its directory in read-write mode) and sets WAL, synchronous=FULL,
  // foreign keys and the busy timeout.
  Connection(const std::filesystem::path& path, Mode mode, int busy_timeout_ms = 5000);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void exec(std::string_view sql);
  Statement prepare(std::string_view sql);
  // A statement compiled once per connection and reused: reset and unbound on every call. For
  // hot paths (the writer's per-event statements); never hold two uses of one SQL at once.
  Statement& cached(const std::string& sql);
  std::int64_t last_insert_rowid() const;
  // Rows changed by the last INSERT, UPDATE or DELETE.
  std::int64_t changes() const;
  // Opened read-only although asked to write: SQLite does that, without a word, for a file this
  // user may not write (its mode, chattr +i, a read-only filesystem).
  bool read_only() const;
  const std::filesystem::path& path() const { return path_; }
  sqlite3* raw() { return db_; }
  [[noreturn]] void fail(const std::string& what, int rc) const;

 private:
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
  std::map<std::string, std::unique_ptr<Statement>> cache_;
};

// Read-only connections to one database, kept and reused: opening one costs a file open,
// pragmas and, at its first statement, parsing the schema. A lease returns its connection when it
// ends — its statements finished or reset by then — unless it ends by an exception.
class ReaderPool {
 public:
  explicit ReaderPool(std::filesystem::path path, std::size_t keep = 4)
      : path_(std::move(path)), keep_(keep) {}

  class Lease {
   public:
    Lease(ReaderPool& pool, std::unique_ptr<Connection> c)
        : pool_(pool), c_(std::move(c)), exceptions_(std::uncaught_exceptions()) {}
    Lease(Lease&&) = default;
    ~Lease();
    Connection& operator*() { return *c_; }
    Connection* operator->() { return c_.get(); }

   private:
    ReaderPool& pool_;
    std::unique_ptr<Connection> c_;
    int exceptions_;  // a lease ended by an exception drops its connection (a statement may be
                      // mid-step, holding a read transaction)
  };
  // A kept connection, or a new one (throws StorageError when the file cannot be opened).
  Lease acquire();

 private:
  std::filesystem::path path_;
  std::size_t keep_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

class Statement {
 public:
  Statement(Connection& c, std::string_view sql);
  ~Statement();
  Statement(Statement&& o) noexcept;
  Statement(const Statement&) = delete;

  Statement& bind(int index, std::int64_t v);
  Statement& bind(int index, std::string_view v);
  Statement& bind_real(int index, double v);
  Statement& bind_null(int index);
  Statement& bind_blob(int index, std::string_view bytes);
  // True while a row is available; false when done. Throws on error.
  bool step();
  void reset();
  std::int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;
  std::string blob(int col) const;  // a BLOB column's bytes (empty when NULL)
  bool is_null(int col) const;
  int column_count() const;
  std::string column_name(int col) const;

 private:
  Connection* c_;
  sqlite3_stmt* s_ = nullptr;
  std::string sql_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back if not committed.
class Transaction {
 public:
  explicit Transaction(Connection& c);
  ~Transaction();
  void commit();

 private:
  Connection& c_;
  bool done_ = false;
};

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

struct MigrationStatus {
  int version = 0;
  std::vector<std::pair<int, std::string>> applied;  // (version, applied_at)
};

// Applies every migration newer than the database's version, each in its own transaction.
// A database newer than this binary is an error (downgrades are refused).
MigrationStatus migrate(Connection& c, const std::vector<Migration>& migrations);
// Read-only: version 0 for a database no migration has touched.
MigrationStatus migration_status(Connection& c);

}  // namespace kiln::storage
