#include "ledger/ledger.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <pthread.h>

#include <spdlog/spdlog.h>

#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"

namespace kiln::ledger {
namespace json = boost::json;
using storage::Connection;

std::string genesis_hash() {
  return std::string(64, '0');
}

std::string chain_hash(const std::string& prev_hash, std::int64_t seq, const std::string& time,
                       const std::string& tenant, const std::string& stream,
                       const std::string& kind, const std::string& payload) {
  // A JSON array is an unambiguous encoding of the fields, whatever characters they hold.
  json::array canonical{json::value(prev_hash), json::value(seq),    json::value(time),
                        json::value(tenant),    json::value(stream), json::value(kind),
                        json::value(payload)};
  return common::sha256_hex(json::serialize(canonical));
}

std::string utc_millis(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  // Floored, not truncated: a time before 1970 keeps its milliseconds positive.
  const auto since = floor<milliseconds>(t.time_since_epoch());
  const auto secs = floor<seconds>(since);
  const auto ms = (since - secs).count();
  std::time_t tt = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
  return buf;
}

std::string utc_now_millis() {
  return utc_millis(std::chrono::system_clock::now());
}

namespace {

// The canonical row of chain_hash, built from a prepared tail; byte-identical to serializing
// the JSON array (prev_hash is hex and time ISO 8601: neither needs escaping).
std::string fast_chain_hash(const std::string& prev_hash, std::int64_t seq, const std::string& time,
                            const std::string& tail) {
  std::string canonical;
  canonical.reserve(prev_hash.size() + time.size() + tail.size() + 32);
  canonical += "[\"";
  canonical += prev_hash;
  canonical += "\",";
  canonical += std::to_string(seq);
  canonical += ",\"";
  canonical += time;
  canonical += "\",";
  canonical += tail;
  return common::sha256_hex(canonical);
}

// Appends `s` as a JSON string, exactly as json::serialize writes it (the same serializer), without
// copying it into a json::value first. One serializer per thread: it keeps its buffers.
void append_json_string(std::string& out, std::string_view s) {
  thread_local json::serializer sr;
  sr.reset(json::string_view(s.data(), s.size()));
  char buf[512];
  while (!sr.done()) {
    const auto part = sr.read(buf, sizeof buf);
    out.append(part.data(), part.size());
  }
}

}  // namespace

SqliteLedger::Prepared SqliteLedger::prepare(NewEvent&& e) {
  Prepared p;
  // Strings from outside (a device's fields, a request path) may hold bytes that are not UTF-8;
  // stored as they are they would make the row unreadable as JSON.
  p.payload = common::to_valid_utf8(json::serialize(e.payload));
  e.tenant = common::to_valid_utf8(std::move(e.tenant));
  e.stream = common::to_valid_utf8(std::move(e.stream));
  e.kind = common::to_valid_utf8(std::move(e.kind));
  p.tail.reserve(e.tenant.size() + e.stream.size() + e.kind.size() + p.payload.size() * 5 / 4 + 16);
  append_json_string(p.tail, e.tenant);
  p.tail += ',';
  append_json_string(p.tail, e.stream);
  p.tail += ',';
  append_json_string(p.tail, e.kind);
  p.tail += ',';
  append_json_string(p.tail, p.payload);
  p.tail += ']';
  p.tenant = std::move(e.tenant);
  p.stream = std::move(e.stream);
  p.kind = std::move(e.kind);
  return p;
}

json::object Event::to_json() const {
  json::error_code ec;
  json::value p = json::parse(payload, ec);
  return {{"seq", seq},
          {"time", time},
          {"tenant", tenant},
          {"stream", stream},
          {"kind", kind},
          {"payload", ec ? json::value(payload) : p},
          {"prev_hash", prev_hash},
          {"hash", hash}};
}

namespace {

constexpr const char* kSelect =
    "SELECT seq, time, tenant, stream, kind, payload, prev_hash, hash FROM ledger";

Event row(const storage::Statement& st) {
  return Event{st.int64(0), st.text(1), st.text(2), st.text(3),
               st.text(4),  st.text(5), st.text(6), st.text(7)};
}

// From `from_seq` on (1: the whole chain); a later start trusts the row before it as its anchor.
VerifyResult verify_on(Connection& c, std::int64_t from_seq = 1) {
  VerifyResult r;
  std::string prev = genesis_hash();
  std::int64_t expected_seq = 1;
  if (from_seq > 1) {
    auto anchor = c.prepare(std::string(kSelect) + " WHERE seq = ?");
    anchor.bind(1, from_seq - 1);
    if (anchor.step()) {
      prev = row(anchor).hash;
      expected_seq = from_seq;
    }
  }
  auto st = c.prepare(std::string(kSelect) + " WHERE seq >= ? ORDER BY seq");
  st.bind(1, expected_seq);
  while (st.step()) {
    Event e = row(st);
    auto bad = [&](std::int64_t seq, std::string why) {
      r.ok = false;
      r.first_bad_seq = seq;
      r.reason = std::move(why);
    };
    if (e.seq != expected_seq) {
      bad(expected_seq, "row missing: the next row is seq " + std::to_string(e.seq));
      break;
    }
    if (e.prev_hash != prev) {
      bad(e.seq, "prev_hash does not match the hash of seq " + std::to_string(e.seq - 1) +
                     " (rows removed, reordered or rewritten)");
      break;
    }
    std::string h = chain_hash(e.prev_hash, e.seq, e.time, e.tenant, e.stream, e.kind, e.payload);
    if (h != e.hash) {
      bad(e.seq, "content does not match its hash (the row was changed)");
      break;
    }
    prev = e.hash;
    ++expected_seq;
    ++r.checked;
  }
  r.head_hash = prev;
  return r;
}

}  // namespace

SqliteLedger::SqliteLedger(std::filesystem::path db_path) : path_(std::move(db_path)) {
  {
    Connection c(path_, Connection::Mode::kReadWrite);
    storage::migrate(c, storage::kernel_migrations());
  }
  writer_ = std::thread([this] { writer_loop(); });
  flusher_ = std::thread([this] { flusher_loop(); });
  checkpointer_ = std::thread([this] { checkpointer_loop(); });
}

SqliteLedger::~SqliteLedger() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
  {
    std::lock_guard lock(flush_mu_);
    writer_done_ = true;
  }
  flush_cv_.notify_all();
  flusher_.join();
  // Only now: closing the last connection checkpoints the WAL and deletes it, and the flusher
  // syncs that file for the groups the writer committed last.
  writer_conn_.reset();
  {
    std::lock_guard lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_all();
  checkpointer_.join();
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

void SqliteLedger::enqueue(Pending* p) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw std::logic_error("ledger is closing");
    p->group = groups_taken_ + 1;
    // The writer is either busy (it looks at the queue when done), waiting for a first item, or
    // holding back an audit-only group (writer_loop): only a first item, a caller who waits,
    // or a full group need to wake it — not every audit event.
    wake = queue_.empty();
    queue_.push_back(p);
    if (p->async && !p->done) {
      queued_async_events_ += p->events.size();
      wake = wake || queued_async_events_ >= kAsyncGroupEvents;
    } else {
      ++queued_waiting_;
      wake = true;
    }
  }
  if (wake) cv_.notify_one();
}

std::vector<Event> SqliteLedger::wait(Pending& p) {
  auto& word = finished_[p.group % 2];
  for (;;) {
    const std::uint32_t v = word.load(std::memory_order_acquire);
    // Group numbers wrap: compare by signed distance.
    if (static_cast<std::int32_t>(v - p.group) >= 0) break;
    word.wait(v, std::memory_order_acquire);
  }
  if (p.error) std::rethrow_exception(p.error);
  return std::move(p.result);
}

std::vector<Event> SqliteLedger::append(std::vector<NewEvent> events) {
  if (events.empty()) return {};
  Pending p;
  p.events.reserve(events.size());
  for (auto& e : events) p.events.push_back(prepare(std::move(e)));
  enqueue(&p);
  return wait(p);
}

std::vector<Event> SqliteLedger::execute(Command command) {
  Pending p;
  p.command = std::move(command);
  enqueue(&p);
  return wait(p);
}

void SqliteLedger::execute_async(Command command, Done done) {
  auto p = std::make_unique<Pending>();
  p->command = std::move(command);
  p->done = std::move(done);
  p->async = true;
  enqueue(p.get());
  p.release();  // the writer owns it now
}

void SqliteLedger::add_projector(Projector projector) {
  std::lock_guard lock(mu_);
  projectors_.push_back(std::move(projector));
}

void SqliteLedger::append_async(std::vector<NewEvent> events) {
  if (events.empty()) return;
  auto p = std::make_unique<Pending>();
  p->events.reserve(events.size());
  for (auto& e : events) p->events.push_back(prepare(std::move(e)));
  p->async = true;
  enqueue(p.get());
  p.release();  // the writer owns it now
}

void SqliteLedger::flush() {
  // An empty synchronous marker: its group finishes only after every earlier group.
  Pending p;
  enqueue(&p);
  try {
    wait(p);
  } catch (...) {
    // Failures were reported to their own callers (or logged for async events).
  }
}

namespace {
// The message of a failure that is the storage's (read-only, full, I/O, corrupt), not the
// command's own (a conflict, a constraint), else nullopt.
std::optional<std::string> storage_failure(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const storage::StorageError& e) {
    switch (e.sqlite_code() & 0xff) {
      case SQLITE_READONLY:
      case SQLITE_IOERR:
      case SQLITE_FULL:
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
      case SQLITE_CANTOPEN:
        return std::string(e.what());
      default:
        break;
    }
  } catch (...) {
  }
  return std::nullopt;
}
}  // namespace

std::optional<std::string> SqliteLedger::failing() const {
  std::lock_guard lock(mu_);
  return failing_;
}

std::int64_t SqliteLedger::async_failures() const {
  std::lock_guard lock(mu_);
  return async_failures_;
}

void SqliteLedger::writer_loop() {
  pthread_setname_np(pthread_self(), "kiln-ledger");  // names it in top -H, perf and gdb
  std::unique_ptr<Connection>& c = writer_conn_;      // closed by the destructor, after the flusher
  std::unique_ptr<storage::Statement> insert;
  std::unique_ptr<storage::Statement> data_version_stmt;
  std::exception_ptr open_error;
  try {
    c = std::make_unique<Connection>(path_, Connection::Mode::kReadWrite);
    // COMMIT writes the WAL without waiting for the disk; the flusher thread fdatasyncs it
    // before anyone is answered (flusher_loop), so a group's fsync overlaps the next group's
    // work. SQLite still syncs the WAL before each checkpoint and the database after it.
    c->exec("PRAGMA synchronous=NORMAL");
    // Replaces SQLite's automatic checkpoint, which would run inside COMMIT on this thread.
    sqlite3_wal_hook(c->raw(), &SqliteLedger::on_wal_commit, this);
    // SQLite's own name for the WAL (a symlinked database has its WAL next to the target).
    wal_path_ = sqlite3_filename_wal(sqlite3_db_filename(c->raw(), "main"));
    insert = std::make_unique<storage::Statement>(
        c->prepare("INSERT INTO ledger (seq, time, tenant, stream, kind, payload, prev_hash, "
                   "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
    data_version_stmt = std::make_unique<storage::Statement>(c->prepare("PRAGMA data_version"));
  } catch (...) {
    // Reported to every caller instead of terminating the process on this thread.
    open_error = std::current_exception();
  }
  std::vector<Projector> projectors;
  bool head_known = false;
  std::int64_t data_version = -1;
  std::int64_t head_seq = 0;
  std::string head_hash;
  std::chrono::steady_clock::time_point last_commit;  // of the last group that wrote anything
  for (;;) {
    std::deque<Pending*> batch;
    std::uint32_t group = 0;
    {
      // One group may wait for the disk while the next one is written: a third waits until the
      // first is synced, gathering what arrives meanwhile, rather than committing a few items
      // at a time (a commit costs CPU whatever its size).
      std::unique_lock flush_lock(flush_mu_);
      flush_cv_.wait(flush_lock, [&] { return unsynced_groups_ < kUnsyncedGroups; });
    }
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      // Only audit events queued (nobody waits for them): they wait for the rest of
      // kAsyncCommitInterval after the last commit, so that under a stream of tool calls one
      // fsync covers many of them. A caller who waits, a full group or closing ends the wait.
      if (queued_waiting_ == 0 && !stopping_ && queued_async_events_ < kAsyncGroupEvents)
        cv_.wait_until(lock, last_commit + kAsyncCommitInterval, [&] {
          return stopping_ || queued_waiting_ > 0 || queued_async_events_ >= kAsyncGroupEvents;
        });
      batch.swap(queue_);
      queued_waiting_ = 0;
      queued_async_events_ = 0;
      group = ++groups_taken_;
      // Projectors are only ever added; refresh the writer's copy when one was.
      if (projectors.size() != projectors_.size()) projectors = projectors_;
    }
    // Every group, failed or not, goes to the flusher, which answers groups in order: a
    // committed one only after the WAL is on disk.
    auto finish = [&](bool needs_sync) {
      {
        std::lock_guard lock(flush_mu_);
        flush_queue_.push_back(Flushable{group, std::move(batch), needs_sync});
        ++unsynced_groups_;
      }
      flush_cv_.notify_all();
    };
    std::exception_ptr refuse_all = open_error;
    if (!refuse_all) {
      std::lock_guard lock(flush_mu_);
      refuse_all = sync_failure_;
    }
    if (refuse_all) {
      std::int64_t lost = 0;
      for (Pending* p : batch) {
        p->error = refuse_all;
        if (p->async && !p->done) lost += static_cast<std::int64_t>(p->events.size());
      }
      if (lost > 0) {
        std::lock_guard lock(mu_);
        async_failures_ += lost;
      }
      finish(false);
      continue;
    }
    // One transaction for everything queued so far (the flusher syncs it). The head is read inside
    // the transaction, so the chain continues correctly even after a failed group.
    std::vector<std::vector<Event>> results(batch.size());
    std::int64_t appended = 0;  // rows this group committed, asynchronous ones included
    std::vector<std::exception_ptr> item_errors(batch.size());
    bool changed = false;  // the group wrote something: answered only once it is on disk
    // A command refused by the storage itself (read-only, full, an I/O error) while the group
    // went on: the storage is failing as surely as when a whole group fails.
    std::optional<std::string> storage_refused;
    try {
      const auto changes_before = sqlite3_total_changes64(c->raw());
      storage::Transaction tx(*c);
      // The chain head is cached between groups. It is read again (inside the transaction) at
      // the first group, after a failed one, and whenever another connection — another kiln
      // process — has committed since (SQLite's data_version changes only then).
      data_version_stmt->reset();
      data_version_stmt->step();
      if (data_version_stmt->int64(0) != data_version) head_known = false;
      data_version = data_version_stmt->int64(0);
      data_version_stmt->reset();
      if (!head_known) {
        head_seq = 0;
        head_hash = genesis_hash();
        auto head = c->prepare("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1");
        if (head.step()) {
          head_seq = head.int64(0);
          head_hash = head.text(1);
        }
        head_known = true;
      }
      std::int64_t seq = head_seq;
      std::string prev = head_hash;
      const std::string now = utc_now_millis();  // one time for the whole group
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Pending& p = *batch[i];
        // A command runs in its own savepoint: when it throws (a precondition not met, a
        // projection refusing an event) only its own rows are taken back. Plain appends need
        // none; a failure there fails the group.
        const bool savepoint = static_cast<bool>(p.command);
        // Savepoint statements are compiled once, not parsed again for every command.
        auto run = [&](const char* sql) {
          auto& st = c->cached(sql);
          st.step();
          st.reset();
        };
        if (savepoint) run("SAVEPOINT item");
        const std::int64_t seq_before = seq;
        const std::string prev_before = prev;
        // Rollbacks that undo what a command did after it returned (its events, a projection)
        // are counted for commands that remember their writes; a command that throws undoes its
        // own bookkeeping.
        bool command_returned = false;
        try {
          if (p.command)
            for (auto& ne : p.command(*c)) p.events.push_back(prepare(std::move(ne)));
          command_returned = true;
          for (auto& pe : p.events) {
            Event e;
            e.seq = ++seq;
            e.time = now;
            e.tenant = std::move(pe.tenant);
            e.stream = std::move(pe.stream);
            e.kind = std::move(pe.kind);
            e.payload = std::move(pe.payload);
            e.prev_hash = prev;
            e.hash = fast_chain_hash(e.prev_hash, e.seq, e.time, pe.tail);
            insert->reset();
            insert->bind(1, e.seq).bind(2, e.time).bind(3, e.tenant).bind(4, e.stream);
            insert->bind(5, e.kind).bind(6, e.payload).bind(7, e.prev_hash).bind(8, e.hash);
            insert->step();
            for (const auto& project : projectors) project(*c, e);
            prev = e.hash;
            // Nobody reads an audit append's result.
            if (!p.async || p.done) results[i].push_back(std::move(e));
          }
          insert->reset();
          if (savepoint) run("RELEASE item");
        } catch (...) {
          insert->reset();
          if (!savepoint) throw;
          auto original = std::current_exception();
          try {
            c->exec("ROLLBACK TO item");
            c->exec("RELEASE item");
            if (command_returned) rollbacks_.fetch_add(1);
          } catch (...) {
            // SQLite already rolled the whole transaction back (disk full, I/O error): the
            // group fails with the error that caused it, not with the savepoint's.
            std::rethrow_exception(original);
          }
          seq = seq_before;
          prev = prev_before;
          results[i].clear();
          item_errors[i] = std::current_exception();
          if (!storage_refused) storage_refused = storage_failure(item_errors[i]);
        }
      }
      insert->reset();
      changed = sqlite3_total_changes64(c->raw()) != changes_before;
      tx.commit();
      if (seq > head_seq)
        spdlog::trace("ledger committed seq={}-{} head={}", head_seq + 1, seq, prev);
      appended = seq - head_seq;
      if (appended > 0) last_commit = std::chrono::steady_clock::now();
      head_seq = seq;
      head_hash = prev;
      if (storage_refused) {
        failed_groups_.fetch_add(1);
        std::lock_guard lock(mu_);
        failing_ = *storage_refused;
        failing_now_.store(true, std::memory_order_relaxed);
      } else if (changed && failing_now_.load(std::memory_order_relaxed)) {
        // Writing again (a group that wrote nothing — a worker's empty claim poll — proves
        // nothing about the disk).
        std::lock_guard lock(mu_);
        failing_.reset();
        failing_now_.store(false, std::memory_order_relaxed);
      }
    } catch (...) {
      head_known = false;
      rollbacks_.fetch_add(1);
      insert->reset();
      auto err = std::current_exception();
      std::int64_t lost = 0;
      for (Pending* p : batch) {
        if (p->async && !p->done) lost += static_cast<std::int64_t>(p->events.size());
        p->error = err;
      }
      std::string why;
      try {
        std::rethrow_exception(err);
      } catch (const std::exception& e) {
        why = e.what();
      } catch (...) {
        why = "unknown error";
      }
      failed_groups_.fetch_add(1);
      {
        std::lock_guard lock(mu_);
        failing_ = why;
        failing_now_.store(true, std::memory_order_relaxed);
      }
      if (lost > 0) {
        spdlog::error("ledger: {} audit event(s) could not be stored: {}", lost, why);
        std::lock_guard lock(mu_);
        async_failures_ += lost;
      }
      finish(false);
      continue;
    }
    {
      std::lock_guard lock(mu_);
      // Commands that appended nothing (an empty claim poll) are no group.
      if (appended > 0) ++groups_;
      written_ += appended;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (item_errors[i]) {
        if (batch[i]->async && !batch[i]->done) {
          std::lock_guard lock(mu_);
          async_failures_ += static_cast<std::int64_t>(batch[i]->events.size());
        }
        batch[i]->error = item_errors[i];
      } else {
        batch[i]->result = std::move(results[i]);
      }
    }
    finish(changed);
    // The checkpointer has not let the WAL start over (a checkpoint beside a busy writer only
    // copies what was there when it began): checkpoint here, between groups, as SQLite would.
    if (wal_pages_.load(std::memory_order_relaxed) >= kWalLimitPages) {
      int log = 0, copied = 0;
      const int rc =
          sqlite3_wal_checkpoint_v2(c->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
      if (rc == SQLITE_OK) {
        checkpoints_.fetch_add(1);
        wal_pages_.store(0, std::memory_order_relaxed);  // known again at the next commit
      } else if (rc != SQLITE_BUSY) {
        spdlog::warn("ledger: checkpoint of {} failed: {}", path_.string(),
                     sqlite3_errmsg(c->raw()));
      }
    }
  }
}

int SqliteLedger::on_wal_commit(void* self, sqlite3*, const char*, int pages) {
  auto* l = static_cast<SqliteLedger*>(self);
  l->wal_pages_.store(pages, std::memory_order_relaxed);
  if (pages >= kCheckpointPages) {
    {
      std::lock_guard lock(l->checkpoint_mu_);
      l->checkpoint_wanted_ = true;
    }
    l->checkpoint_cv_.notify_one();
  }
  return SQLITE_OK;
}

void SqliteLedger::checkpointer_loop() {
  pthread_setname_np(pthread_self(), "kiln-ledger-ck");
  std::unique_ptr<Connection> c;
  for (;;) {
    {
      std::unique_lock lock(checkpoint_mu_);
      checkpoint_cv_.wait(lock, [&] { return checkpoint_stop_ || checkpoint_wanted_; });
      if (checkpoint_stop_) return;
      checkpoint_wanted_ = false;
    }
    // PASSIVE: copies committed pages into the database file while the writer goes on; the WAL
    // starts over at the writer's next transaction once everything in it has been copied.
    try {
      if (!c) c = std::make_unique<Connection>(path_, Connection::Mode::kReadWrite);
      int log = 0, copied = 0;
      const int rc =
          sqlite3_wal_checkpoint_v2(c->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
      if (rc == SQLITE_OK)
        checkpoints_.fetch_add(1);
      else if (rc != SQLITE_BUSY)  // busy: the writer's own checkpoint is running
        spdlog::warn("ledger: checkpoint of {} failed: {}", path_.string(),
                     sqlite3_errmsg(c->raw()));
    } catch (const std::exception& e) {
      // The writer checkpoints itself once the WAL passes kWalLimitPages: nothing is lost.
      spdlog::warn("ledger: checkpointer: {}", e.what());
      c.reset();
    }
  }
}

void SqliteLedger::answer(Flushable& f) {
  // Hands every item its outcome, frees the asynchronous ones and wakes the group's callers with
  // one wake. A synchronous item lives on its caller's stack: it is not touched after.
  for (Pending* p : f.batch) {
    if (!p->async) continue;
    if (p->done) {
      try {
        p->done(std::move(p->result), p->error);
      } catch (const std::exception& e) {
        spdlog::error("ledger: a completion handler threw: {}", e.what());
      } catch (...) {
        spdlog::error("ledger: a completion handler threw");
      }
    }
    delete p;
  }
  // seq_cst, not release: notify_all skips the wake when it sees no waiter, and a waiter
  // registers before it reads the word; only a full barrier between this store and that check
  // keeps a waiter from reading the old value after the check saw none (a lost wake).
  finished_[f.group % 2].store(f.group, std::memory_order_seq_cst);
  finished_[f.group % 2].notify_all();
}

void SqliteLedger::sync_wal() {
  const std::string& wal = wal_path_;
  struct stat now {};
  if (wal_fd_ >= 0) {
    struct stat open_one {};
    // SQLite deletes the WAL when the last connection closes (another process's, say) and makes
    // a new one: sync the file that is there now.
    if (::fstat(wal_fd_, &open_one) != 0 || ::stat(wal.c_str(), &now) != 0 ||
        open_one.st_ino != now.st_ino || open_one.st_dev != now.st_dev) {
      ::close(wal_fd_);
      wal_fd_ = -1;
    }
  }
  if (wal_fd_ < 0) {
    wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
    if (wal_fd_ < 0)
      throw storage::StorageError("cannot open " + wal + " to sync it: " + std::strerror(errno) +
                                      " (was the database's directory changed under kiln?)",
                                  SQLITE_CANTOPEN);
    // The WAL's directory entry too, once per file: a new WAL is not durable before it is.
    const auto parent = std::filesystem::path(wal).parent_path();
    const std::string dir = parent.empty() ? "." : parent.string();
    // As SQLite does, a directory that cannot be opened or synced at all (some file systems
    // refuse fsync on directories) is logged and passed; an I/O error is not.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool dir_synced = dfd >= 0 && ::fsync(dfd) == 0;
    const int dir_errno = errno;
    if (dfd >= 0) ::close(dfd);
    if (!dir_synced && dir_errno == EIO) {
      ::close(wal_fd_);
      wal_fd_ = -1;
      throw storage::StorageError(
          "cannot sync the directory " + dir + " of " + wal + ": " + std::strerror(dir_errno),
          SQLITE_IOERR_DIR_FSYNC);
    }
    if (!dir_synced)
      spdlog::warn("ledger: cannot sync the directory {} ({}); the file system may not support it",
                   dir, std::strerror(dir_errno));
  }
  if (::fdatasync(wal_fd_) == 0) {
    ++syncs_;
    return;
  }
  throw storage::StorageError("cannot make " + wal +
                                  " durable (fdatasync: " + std::strerror(errno) +
                                  "); the disk may be failing or full — check the system log",
                              SQLITE_IOERR_FSYNC);
}

void SqliteLedger::flusher_loop() {
  pthread_setname_np(pthread_self(), "kiln-ledger-fl");
  for (;;) {
    std::deque<Flushable> work;
    {
      std::unique_lock lock(flush_mu_);
      flush_cv_.wait(lock, [&] { return writer_done_ || !flush_queue_.empty(); });
      if (flush_queue_.empty()) return;  // the writer has finished and everything is answered
      work.swap(flush_queue_);
    }
    // One fdatasync covers every group committed so far: while it waits for the disk the writer
    // goes on with the next groups.
    // After a failed sync nothing is trusted any more: a later fdatasync may succeed although
    // the pages of the failed one were dropped. Every group from then on gets that error (the
    // writer refuses new ones too); a restart is needed.
    std::exception_ptr failed;
    {
      std::lock_guard lock(flush_mu_);
      failed = sync_failure_;
    }
    bool needs_sync = false;
    for (const auto& f : work) needs_sync = needs_sync || f.needs_sync;
    if (needs_sync && !failed) {
      try {
        sync_wal();
      } catch (...) {
        failed = std::current_exception();
        std::string why = "unknown error";
        try {
          std::rethrow_exception(failed);
        } catch (const std::exception& e) {
          why = e.what();
        } catch (...) {
        }
        spdlog::critical(
            "ledger: committed groups are not known to be durable, refusing all further writes "
            "until kiln is restarted: {}",
            why);
        std::lock_guard lock(flush_mu_);
        sync_failure_ = failed;
      }
    }
    for (auto& f : work) {
      if (failed)
        for (Pending* p : f.batch)
          if (!p->error) {
            p->error = failed;
            p->result.clear();
            if (p->async && !p->done) {
              std::lock_guard lock(mu_);
              async_failures_ += static_cast<std::int64_t>(p->events.size());
            }
          }
      answer(f);
    }
    {
      std::lock_guard lock(flush_mu_);
      unsynced_groups_ -= work.size();
    }
    flush_cv_.notify_all();  // the writer may take its next group
  }
}

VerifyResult SqliteLedger::verify() {
  Connection c(path_, Connection::Mode::kReadOnly);
  return verify_on(c);
}

VerifyResult verify_file(const std::filesystem::path& db_path) {
  Connection c(db_path, Connection::Mode::kReadOnly);
  return verify_on(c);
}

VerifyResult verify_tail(const std::filesystem::path& db_path, std::int64_t last) {
  Connection c(db_path, Connection::Mode::kReadOnly);
  auto top = c.prepare("SELECT coalesce(max(seq), 0) FROM ledger");
  top.step();
  return verify_on(c, std::max<std::int64_t>(1, top.int64(0) - last + 1));
}

std::int64_t SqliteLedger::for_each(const ExportFilter& f,
                                    const std::function<void(const Event&)>& fn) {
  Connection c(path_, Connection::Mode::kReadOnly);
  std::string sql = std::string(kSelect) + " WHERE seq > ?1";
  if (f.tenant) sql += " AND tenant = ?2";
  if (f.stream) sql += " AND stream = ?3";
  if (f.since_time) sql += " AND time >= ?4";
  if (f.except_stream) sql += " AND stream <> ?6";
  sql += " ORDER BY seq";
  if (f.limit > 0) sql += " LIMIT ?5";
  auto st = c.prepare(sql);
  if (f.limit > 0) st.bind(5, f.limit);
  st.bind(1, f.after_seq);
  if (f.tenant) st.bind(2, *f.tenant);
  if (f.stream) st.bind(3, *f.stream);
  if (f.since_time) st.bind(4, *f.since_time);
  if (f.except_stream) st.bind(6, *f.except_stream);
  std::int64_t n = 0;
  while (st.step()) {
    fn(row(st));
    ++n;
  }
  return n;
}

std::int64_t SqliteLedger::count() {
  Connection c(path_, Connection::Mode::kReadOnly);
  auto st = c.prepare("SELECT count(*) FROM ledger");
  st.step();
  return st.int64(0);
}

std::vector<StreamInfo> SqliteLedger::streams() {
  Connection c(path_, Connection::Mode::kReadOnly);
  auto st = c.prepare(
      "SELECT tenant, stream, count(*), max(seq) FROM ledger GROUP BY tenant, stream "
      "ORDER BY tenant, stream");
  std::vector<StreamInfo> out;
  while (st.step()) out.push_back({st.text(0), st.text(1), st.int64(2), st.int64(3)});
  return out;
}

std::pair<std::int64_t, std::int64_t> SqliteLedger::commit_stats() const {
  std::lock_guard lock(mu_);
  return {groups_, written_};
}

}  // namespace kiln::ledger
