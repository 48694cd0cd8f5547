// The ledger: an append-only, hash-chained log of everything that happened.
// hash(n) = SHA-256 of the canonical row [prev_hash, seq, time, tenant, stream, kind, payload];
// prev_hash(1) is 64 zeros. `Ledger` is the interface a second backend implements;
// SqliteLedger is the embedded default (docs/architecture/storage.md).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

struct sqlite3;

namespace kiln::storage {
class Connection;
}

namespace kiln::ledger {

struct NewEvent {
  std::string tenant;
  std::string stream;
  std::string kind;
  boost::json::value payload;
};

struct Event {
  std::int64_t seq = 0;
  std::string time;  // UTC, ISO 8601 with milliseconds
  std::string tenant;
  std::string stream;
  std::string kind;
  std::string payload;  // JSON text exactly as hashed
  std::string prev_hash;
  std::string hash;
  boost::json::object to_json() const;
};

struct VerifyResult {
  bool ok = true;
  std::int64_t checked = 0;
  std::int64_t first_bad_seq = 0;  // 0 when ok
  std::string reason;
  std::string head_hash;
};

struct ExportFilter {
  std::optional<std::string> tenant;
  std::optional<std::string> stream;
  std::int64_t after_seq = 0;                // only seq > after_seq
  std::optional<std::string> since_time;     // only time >= since_time (ISO 8601 prefix compare)
  std::int64_t limit = 0;                    // at most this many (0: all)
  std::optional<std::string> except_stream;  // all streams but this one
};

// One (tenant, stream) of the ledger.
struct StreamInfo {
  std::string tenant;
  std::string stream;
  std::int64_t count = 0;
  std::int64_t last_seq = 0;
};

std::string genesis_hash();
std::string chain_hash(const std::string& prev_hash, std::int64_t seq, const std::string& time,
                       const std::string& tenant, const std::string& stream,
                       const std::string& kind, const std::string& payload);
std::string utc_now_millis();
// A time as the ledger writes it: UTC, ISO 8601 with milliseconds ("2026-11-22T10:00:00.123Z").
std::string utc_millis(std::chrono::system_clock::time_point t);

class Ledger {
 public:
  virtual ~Ledger() = default;
  // Appends the events atomically, in order, with consecutive seqs, and returns once they are
  // durable (committed with fsync). Throws storage::StorageError; then nothing was stored.
  virtual std::vector<Event> append(std::vector<NewEvent> events) = 0;
  Event append(NewEvent e) { return append(std::vector<NewEvent>{std::move(e)}).front(); }
  // Queues the events for a group commit and returns at once (for high-volume audit events such
  // as tool calls; SqliteLedger commits them within kAsyncCommitInterval). A failure to store
  // them is logged and counted, not thrown.
  virtual void append_async(std::vector<NewEvent> events) = 0;
  // Returns once everything queued before the call is committed (or has failed).
  virtual void flush() = 0;
  // Walks the chain from seq 1; stops at the first bad row.
  virtual VerifyResult verify() = 0;
  // Calls `fn` for each matching event in seq order; returns how many.
  virtual std::int64_t for_each(const ExportFilter& filter,
                                const std::function<void(const Event&)>& fn) = 0;
  virtual std::int64_t count() = 0;
  virtual std::vector<StreamInfo> streams() = 0;
};

// A command runs on the writer thread inside the group's transaction: it reads the current state
// through the connection, decides, and returns the events to append (possibly none). If it
// throws, that command alone is rolled back (a savepoint) and its caller gets the exception.
using Command = std::function<std::vector<NewEvent>(storage::Connection&)>;
// A projection keeps derived tables (missions, steps) in step with the ledger: it is applied to
// every appended event inside the same transaction, and `kiln ledger replay` applies it again
// to rebuild them from the ledger alone.
using Projector = std::function<void(storage::Connection&, const Event&)>;

// SQLite backend: one writer thread commits everything queued so far in one transaction (group
// commit, one fsync per group); readers use their own connections.
class SqliteLedger final : public Ledger {
 public:
  // Opens (creating) the database and applies migrations. Throws storage::StorageError.
  explicit SqliteLedger(std::filesystem::path db_path);
  ~SqliteLedger() override;

  using Ledger::append;
  std::vector<Event> append(std::vector<NewEvent> events) override;
  // Runs `command` on the writer (see Command) and returns the events it appended, durable.
  std::vector<Event> execute(Command command);
  // The same without a waiting thread: `done` gets the events (durable) or the command's or the
  // group's error. It runs on the flusher thread once the group is on disk, before later groups
  // are answered, so it must be quick: hand the answer on (post it, queue it), nothing more.
  using Done = std::function<void(std::vector<Event>, std::exception_ptr)>;
  void execute_async(Command command, Done done);
  // Adds a projection; call before the first append (projections are not retroactive).
  void add_projector(Projector projector);
  void append_async(std::vector<NewEvent> events) override;
  void flush() override;
  VerifyResult verify() override;
  std::int64_t for_each(const ExportFilter& filter,
                        const std::function<void(const Event&)>& fn) override;
  std::int64_t count() override;
  std::vector<StreamInfo> streams() override;
  const std::filesystem::path& path() const { return path_; }
  // Groups committed and events written since open, for benchmarks and /metrics.
  std::pair<std::int64_t, std::int64_t> commit_stats() const;
  // Events queued with append_async that could not be stored.
  std::int64_t async_failures() const;
  // Groups whose transaction failed since open (a full disk, an I/O error) — or that committed
  // with a command the storage refused (a read-only database) — and the error of the newest when
  // no group has written since: storage is failing now (for /ready).
  std::int64_t failed_groups() const { return failed_groups_.load(); }
  std::optional<std::string> failing() const;
  // fdatasyncs of the WAL since open: every answer about a committed group follows one.
  std::int64_t syncs() const { return syncs_.load(); }
  // Rollbacks since open: groups whose transaction failed, and commands rolled back to their
  // savepoint after they returned (their events or a projection failed). A command that caches
  // what it wrote compares this between runs (and undoes its own bookkeeping when it throws):
  // the writer counts a rollback before it runs anything else.
  std::uint64_t rollbacks() const { return rollbacks_.load(); }
  // WAL checkpoints since open: by the checkpointer thread, and by the writer when the WAL had
  // grown past kWalLimitPages.
  std::int64_t checkpoints() const { return checkpoints_.load(); }

  // An audit-only group is committed at most this often; one that reaches kAsyncGroupEvents
  // events goes at once. Audit events are acknowledged to nobody: what this adds is how long one
  // may sit unwritten (the time a crash could take it with it), not how long a caller waits.
  static constexpr std::chrono::milliseconds kAsyncCommitInterval{5};
  static constexpr std::size_t kAsyncGroupEvents = 2048;
  // Checkpoints run on a thread of their own (the writer does not stop for them): one starts when
  // a commit leaves the WAL at kCheckpointPages or more (SQLite's own default). A passive
  // checkpoint beside a busy writer may not let the WAL start over; past kWalLimitPages the writer
  // checkpoints itself, as SQLite would, so the WAL stays bounded (≈ 32 MB of 4 KB pages).
  static constexpr int kCheckpointPages = 1000;
  static constexpr int kWalLimitPages = 8 * kCheckpointPages;

 private:
  // An event made ready for the writer on the caller's thread: the payload serialized and the
  // constant tail of the canonical row (tenant, stream, kind, payload as JSON strings) encoded,
  // so the writer only adds prev_hash, seq and time before hashing.
  struct Prepared {
    std::string tenant, stream, kind, payload, tail;
  };
  static Prepared prepare(NewEvent&& e);
  // One caller's request. A synchronous caller keeps it on its own stack and waits for its
  // group; an asynchronous one is owned (and freed) by the writer: an audit append (nobody
  // waits) or a command whose caller waits for `done`.
  struct Pending {
    std::vector<Prepared> events;
    Command command;
    Done done;
    bool async = false;
    std::uint32_t group = 0;  // the group that takes it: set under mu_ when queued
    std::vector<Event> result;
    std::exception_ptr error;
  };
  // A group the writer is done with, on its way to its callers through the flusher.
  struct Flushable {
    std::uint32_t group = 0;
    std::deque<Pending*> batch;
    bool needs_sync = false;  // committed changes: answered only after the WAL is synced
  };
  // Queues `p`; its group is the next the writer takes, since the writer takes the whole queue.
  void enqueue(Pending* p);
  // Waits until the writer has finished p's group (committed or failed), then returns its result.
  std::vector<Event> wait(Pending& p);
  void writer_loop();
  // Syncs the WAL for every committed group handed over so far, then answers them in order.
  void flusher_loop();
  void sync_wal();  // fdatasync of the database's WAL file (flusher thread)
  void checkpointer_loop();
  // SQLite's WAL hook on the writer's connection: notes the WAL's size after each commit and
  // wakes the checkpointer.
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);
  void answer(Flushable& f);

  std::filesystem::path path_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending*> queue_;
  std::size_t queued_waiting_ = 0;       // items somebody waits for in queue_ (under mu_)
  std::size_t queued_async_events_ = 0;  // events of asynchronous items in queue_ (under mu_)
  std::uint32_t groups_taken_ = 0;       // under mu_
  // The last finished group of each parity. Callers of group g wait on finished_[g % 2], so one
  // wake per group reaches exactly the callers in it: those queued for the next group wait on
  // the other word, and no later group exists until the next one is taken.
  std::atomic<std::uint32_t> finished_[2] = {0, 0};
  std::vector<Projector> projectors_;  // read by the writer only after the first enqueue
  bool stopping_ = false;
  std::int64_t groups_ = 0;
  std::int64_t written_ = 0;
  std::int64_t async_failures_ = 0;
  std::atomic<std::int64_t> failed_groups_{0};
  std::optional<std::string> failing_;                // guarded by mu_
  std::atomic<bool> failing_now_{false};              // failing_ is set: a commit clears it
  std::unique_ptr<storage::Connection> writer_conn_;  // the writer thread's, while it runs
  std::thread writer_;
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::deque<Flushable> flush_queue_;  // under flush_mu_, in group order
  bool writer_done_ = false;           // under flush_mu_
  std::size_t unsynced_groups_ = 0;    // handed to the flusher, not yet answered (flush_mu_)
  static constexpr std::size_t kUnsyncedGroups = 2;
  std::string wal_path_;             // set by the writer before it hands over a group
  std::exception_ptr sync_failure_;  // the first failed sync, latched (flush_mu_)
  int wal_fd_ = -1;                  // flusher thread only
  std::atomic<std::int64_t> syncs_{0};
  std::atomic<std::uint64_t> rollbacks_{0};
  std::thread flusher_;
  std::atomic<int> wal_pages_{0};  // after the writer's last commit
  std::atomic<std::int64_t> checkpoints_{0};
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;  // under checkpoint_mu_
  bool checkpoint_stop_ = false;    // under checkpoint_mu_
  std::thread checkpointer_;
};

// Verifies the chain of any database file read-only (no migrations, no writer).
VerifyResult verify_file(const std::filesystem::path& db_path);
// The newest `last` events only, anchored on the one before them: what `kiln serve` checks at
// start (a whole chain can take minutes), `checked` counting those.
VerifyResult verify_tail(const std::filesystem::path& db_path, std::int64_t last);

}  // namespace kiln::ledger
