// Storage and the hash-chained ledger: migrations, durability of appends, tamper detection.
#define BOOST_TEST_MODULE ledger
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <thread>

#include <boost/test/unit_test.hpp>

#include <sqlite3.h>

#include "ledger/backfill.hpp"
#include "ledger/ledger.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"

namespace json = boost::json;
using namespace kiln;
using storage::Connection;

namespace {

struct Db {
  test::TempDir dir;
  std::filesystem::path path = dir.path() / "sub" / "kiln.db";
};

ledger::NewEvent ev(std::string kind, json::value payload = json::object{},
                    std::string tenant = "acme", std::string stream = "missions") {
  return {std::move(tenant), std::move(stream), std::move(kind), std::move(payload)};
}

// Raw access that bypasses the append-only triggers, as an attacker or a broken disk would.
void tamper(const std::filesystem::path& path, const std::string& sql) {
  Connection c(path, Connection::Mode::kReadWrite);
  c.exec("DROP TRIGGER IF EXISTS ledger_no_update; DROP TRIGGER IF EXISTS ledger_no_delete;");
  c.exec(sql);
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(migrations_apply_once_and_refuse_downgrades, Db) {
  {
    ledger::SqliteLedger l(path);  // creates the directory and the file
  }
  {
    Connection c(path, Connection::Mode::kReadWrite);
    auto s = storage::migrate(c, storage::kernel_migrations());
    BOOST_TEST(s.version == storage::kernel_migrations().back().version);
    BOOST_TEST(s.applied.size() == storage::kernel_migrations().size());
    auto mode = c.prepare("PRAGMA journal_mode");
    mode.step();
    BOOST_TEST(mode.text(0) == "wal");
    c.exec("INSERT INTO schema_migrations VALUES (99, 'future', 'x')");
  }
  BOOST_CHECK_EXCEPTION(ledger::SqliteLedger{path}, storage::StorageError, [](const auto& e) {
    return std::string(e.what()).find("schema version 99") != std::string::npos;
  });
}

// Migration 6 moves telemetry batches from a WITHOUT ROWID table keyed by device and sequence
// to a rowid table with a unique key: the rows stored before survive, the key still refuses a
// second copy, and both lookups (by key, by time) use an index.
BOOST_FIXTURE_TEST_CASE(telemetry_batches_keep_their_rows_and_key_across_migration_6, Db) {
  const auto& all = storage::kernel_migrations();
  std::vector<storage::Migration> up_to_5, up_to_6;
  for (const auto& m : all) {
    if (m.version <= 5) up_to_5.push_back(m);
    if (m.version <= 6) up_to_6.push_back(m);
  }
  BOOST_REQUIRE(up_to_6.back().version == 6);
  const char* insert =
      "INSERT INTO telemetry_batches (tenant, device, boot, seq, kid, digest, sent_at, "
      "received_at, first_t, last_t, count, samples) VALUES ('acme', ?, 1, ?, 'k1', ?, 10.5, "
      "'2026-12-02T08:00:00.000Z', ?, ?, 2, '[[1,2,3,4,5,6,7,8]]')";
  {
    Connection c(path, Connection::Mode::kReadWrite);
    BOOST_TEST(storage::migrate(c, up_to_5).version == 5);
    for (int seq = 1; seq <= 3; ++seq) {
      auto st = c.prepare(insert);
      st.bind(1, seq == 3 ? "r1-b" : "r1-a").bind(2, seq).bind(3, "d" + std::to_string(seq));
      st.bind_real(4, seq * 10.0).bind_real(5, seq * 10.0 + 9);
      st.step();
    }
  }
  Connection c(path, Connection::Mode::kReadWrite);
  BOOST_TEST(storage::migrate(c, up_to_6).version == 6);
  auto rows = c.prepare(
      "SELECT device, seq, digest, first_t, samples FROM telemetry_batches ORDER BY device, seq");
  std::vector<std::string> got;
  while (rows.step())
    got.push_back(rows.text(0) + "/" + std::to_string(rows.int64(1)) + "/" + rows.text(2) + "/" +
                  std::to_string(static_cast<int>(rows.real(3))) + "/" + rows.text(4));
  BOOST_TEST(got == (std::vector<std::string>{"r1-a/1/d1/10/[[1,2,3,4,5,6,7,8]]",
                                              "r1-a/2/d2/20/[[1,2,3,4,5,6,7,8]]",
                                              "r1-b/3/d3/30/[[1,2,3,4,5,6,7,8]]"}),
             boost::test_tools::per_element());
  auto again = c.prepare(insert);
  again.bind(1, "r1-a").bind(2, 2).bind(3, "other").bind_real(4, 20.0).bind_real(5, 29.0);
  BOOST_CHECK_THROW(again.step(), storage::StorageError);
  auto plan = [&](const std::string& sql) {
    auto st = c.prepare("EXPLAIN QUERY PLAN " + sql);
    std::string out;
    while (st.step()) out += st.text(3) + "; ";
    return out;
  };
  BOOST_TEST(plan("SELECT digest FROM telemetry_batches WHERE tenant = 'acme' AND device = 'r1-a' "
                  "AND boot = 1 AND seq = 2")
                 .find("USING INDEX telemetry_batches_key") != std::string::npos);
  BOOST_TEST(plan("SELECT samples FROM telemetry_batches WHERE tenant = 'acme' AND device = 'r1-a' "
                  "AND first_t >= 5 ORDER BY first_t")
                 .find("USING INDEX telemetry_by_time") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(appends_chain_and_verify, Db) {
  ledger::SqliteLedger l(path);
  auto a = l.append(ev("mission.created", json::object{{"id", "m1"}}));
  auto batch = l.append(std::vector<ledger::NewEvent>{ev("step.started"), ev("step.done")});
  BOOST_TEST(a.seq == 1);
  BOOST_TEST(a.prev_hash == ledger::genesis_hash());
  BOOST_REQUIRE(batch.size() == 2u);
  BOOST_TEST(batch[0].seq == 2);
  BOOST_TEST(batch[0].prev_hash == a.hash);
  BOOST_TEST(batch[1].prev_hash == batch[0].hash);
  BOOST_TEST(a.hash ==
             ledger::chain_hash(a.prev_hash, a.seq, a.time, a.tenant, a.stream, a.kind, a.payload));
  auto v = l.verify();
  BOOST_TEST(v.ok);
  BOOST_TEST(v.checked == 3);
  BOOST_TEST(v.head_hash == batch[1].hash);
}

BOOST_FIXTURE_TEST_CASE(the_chain_continues_across_reopen, Db) {
  std::string head;
  {
    ledger::SqliteLedger l(path);
    head = l.append(ev("a")).hash;
  }
  ledger::SqliteLedger l(path);
  auto b = l.append(ev("b"));
  BOOST_TEST(b.seq == 2);
  BOOST_TEST(b.prev_hash == head);
  BOOST_TEST(l.verify().ok);
}

// The hand-off between callers and the writer (one wake per finished group) under churn: many
// callers mixing appends, commands that throw, asynchronous appends and flushes. A lost wake
// would leave a caller waiting forever, so a watchdog fails the test instead of hanging it.
BOOST_FIXTURE_TEST_CASE(no_caller_waits_forever_under_churn, Db) {
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 1200 && !done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!done) {
      std::fprintf(stderr, "FAIL: a ledger caller was never woken (120 s)\n");
      std::_Exit(1);
    }
  });
  {
    ledger::SqliteLedger l(path);
    constexpr int kThreads = 12, kEach = 300;
    std::atomic<std::int64_t> appended{0}, refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          switch ((t + i) % 4) {
            case 0:
              l.append(ev("tick", json::object{{"t", t}, {"i", i}}));
              ++appended;
              break;
            case 1:
              try {
                l.execute([](Connection&) -> std::vector<ledger::NewEvent> {
                  throw std::runtime_error("refused");
                });
              } catch (const std::runtime_error&) {
                ++refused;
              }
              break;
            case 2:
              l.append_async({ev("async", json::object{{"t", t}, {"i", i}})});
              ++appended;
              break;
            default:
              l.flush();
          }
        }
      });
    for (auto& th : threads) th.join();
    l.flush();
    BOOST_TEST(refused.load() == kThreads * kEach / 4);
    BOOST_TEST(l.count() == appended.load());
    BOOST_TEST(l.verify().ok);
  }
  done = true;
  watchdog.join();
}

BOOST_FIXTURE_TEST_CASE(concurrent_appends_are_group_committed, Db) {
  ledger::SqliteLedger l(path);
  constexpr int kThreads = 8, kEach = 100;
  std::vector<std::thread> threads;
  std::vector<std::vector<std::int64_t>> seqs(kThreads);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i)
        seqs[static_cast<std::size_t>(t)].push_back(
            l.append(ev("tick", json::object{{"t", t}, {"i", i}})).seq);
    });
  for (auto& th : threads) th.join();
  std::set<std::int64_t> all;
  for (const auto& s : seqs) {
    BOOST_TEST(std::is_sorted(s.begin(), s.end()));  // each caller sees its own order kept
    all.insert(s.begin(), s.end());
  }
  BOOST_TEST(all.size() == static_cast<std::size_t>(kThreads * kEach));
  BOOST_TEST(l.count() == kThreads * kEach);
  auto [groups, written] = l.commit_stats();
  BOOST_TEST(written == kThreads * kEach);
  BOOST_TEST(groups < written);  // several waiting appends shared one commit
  BOOST_TEST(l.verify().ok);
  // Asynchronous events (the tool-call audit) are counted too, and a group of them alone is one.
  for (int i = 0; i < 5; ++i) l.append_async({ev("audit"), ev("audit")});
  l.flush();
  auto [groups_after, written_after] = l.commit_stats();
  BOOST_TEST(written_after == written + 10);
  BOOST_TEST(groups_after > groups);
}

// Audit events alone (nobody waits for them) are committed together, at most one group per
// kAsyncCommitInterval, and without anyone flushing.
BOOST_FIXTURE_TEST_CASE(audit_events_alone_share_commits_and_still_land, Db) {
  ledger::SqliteLedger l(path);
  l.append(ev("start"));
  const auto [groups_before, written_before] = l.commit_stats();
  constexpr int kEvents = 40;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kEvents; ++i) {
    l.append_async({ev("audit", json::object{{"i", i}})});
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // longer than a commit here
  }
  const auto spread = std::chrono::steady_clock::now() - t0;
  // They land without a flush (the writer's wait ends on its own).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (l.commit_stats().second < written_before + kEvents &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto [groups_after, written_after] = l.commit_stats();
  BOOST_REQUIRE(written_after == written_before + kEvents);
  // One group per interval of the time they took to arrive, and one more at each end; a writer
  // committing each as it came would have made about one group per event. (The bound grows with
  // the spread, so a loaded machine whose sleeps stretch past the interval does not fail it.)
  const auto allowed = spread / ledger::SqliteLedger::kAsyncCommitInterval + 2;
  // ... but only while it can still tell the two apart: with 1 ms sleeps stretched past the
  // interval the bound would admit a group per event.
  BOOST_TEST(allowed <= kEvents / 2, "1 ms sleeps took "
                                         << std::chrono::duration<double>(spread).count()
                                         << " s for " << kEvents);
  BOOST_TEST(groups_after - groups_before <= allowed,
             (groups_after - groups_before)
                 << " groups for " << kEvents << " events spread over "
                 << std::chrono::duration<double>(spread).count() << " s");
  // A waiting caller ends the writer's wait; its event follows the audit events queued before it.
  for (int i = 0; i < 3; ++i) l.append_async({ev("audit")});
  const auto e = l.append(ev("waited"));
  BOOST_TEST(e.seq == written_after + 3 + 1);
  BOOST_TEST(l.count() == written_after + 4);
  BOOST_TEST(l.verify().ok);
}

// Audit events that cannot be stored are counted (kiln_ledger_audit_failures_total), and the
// group they failed in leaves nothing behind; the ledger goes on.
BOOST_FIXTURE_TEST_CASE(audit_events_that_cannot_be_stored_are_counted, Db) {
  ledger::SqliteLedger l(path);
  l.add_projector([](Connection&, const ledger::Event& e) {
    if (e.kind == "poison") throw std::runtime_error("the projection refuses it");
  });
  l.append(ev("before"));
  l.append_async({ev("audit"), ev("poison")});
  l.flush();
  BOOST_TEST(l.async_failures() == 2);
  BOOST_TEST(l.count() == 1);
  BOOST_TEST(l.append(ev("after")).seq == 2);
  BOOST_TEST(l.verify().ok);
}

// The writer hashes a canonical row encoded ahead on the caller's thread; it must be the bytes
// chain_hash (and so `verify`) encodes, whatever the strings hold: quotes, backslashes, control
// characters, non-ASCII, strings longer than the encoder's 512-byte buffer.
BOOST_FIXTURE_TEST_CASE(hashes_match_the_canonical_row_for_any_characters, Db) {
  ledger::SqliteLedger l(path);
  std::string wild = "q\"uote b\\ack\nline\ttab \x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac";
  std::string longer;
  while (longer.size() < 3000) longer += wild;
  for (const auto& text : {wild, longer, std::string()}) {
    auto e = l.append(ev("kind \"" + text.substr(0, 20), json::object{{"text", text}, {"n", 1}},
                         "ten\"ant", text));
    BOOST_TEST(e.hash == ledger::chain_hash(e.prev_hash, e.seq, e.time, e.tenant, e.stream, e.kind,
                                            e.payload));
  }
  BOOST_TEST(l.verify().ok);
}

BOOST_FIXTURE_TEST_CASE(a_changed_row_is_named, Db) {
  {
    ledger::SqliteLedger l(path);
    for (int i = 0; i < 5; ++i) l.append(ev("e", json::object{{"i", i}}));
  }
  tamper(path, "UPDATE ledger SET payload = '{\"i\":99}' WHERE seq = 3");
  auto v = ledger::verify_file(path);
  BOOST_TEST(!v.ok);
  BOOST_TEST(v.first_bad_seq == 3);
  BOOST_TEST(v.checked == 2);
  BOOST_TEST(v.reason.find("content does not match") != std::string::npos, v.reason);
}

BOOST_FIXTURE_TEST_CASE(the_tail_check_sees_a_change_among_the_newest_events_only, Db) {
  {
    ledger::SqliteLedger l(path);
    for (int i = 0; i < 10; ++i) l.append(ev("e", json::object{{"i", i}}));
  }
  BOOST_TEST(ledger::verify_tail(path, 4).ok);
  BOOST_TEST(ledger::verify_tail(path, 4).checked == 4);
  BOOST_TEST(ledger::verify_tail(path, 100).checked == 10);
  tamper(path, "UPDATE ledger SET payload = '{\"i\":99}' WHERE seq = 8");
  auto near = ledger::verify_tail(path, 4);
  BOOST_TEST(!near.ok);
  BOOST_TEST(near.first_bad_seq == 8);
  BOOST_TEST(ledger::verify_tail(path, 2).ok);  // older than the newest two: not looked at
}

BOOST_FIXTURE_TEST_CASE(a_removed_row_is_named, Db) {
  {
    ledger::SqliteLedger l(path);
    for (int i = 0; i < 5; ++i) l.append(ev("e"));
  }
  tamper(path, "DELETE FROM ledger WHERE seq = 2");
  auto v = ledger::verify_file(path);
  BOOST_TEST(!v.ok);
  BOOST_TEST(v.first_bad_seq == 2);
  BOOST_TEST(v.reason.find("row missing") != std::string::npos, v.reason);
}

BOOST_FIXTURE_TEST_CASE(reordered_rows_are_named, Db) {
  {
    ledger::SqliteLedger l(path);
    for (int i = 0; i < 5; ++i) l.append(ev("e", json::object{{"i", i}}));
  }
  // Swap rows 3 and 4 wholesale (content and hashes), keeping the seq numbers.
  tamper(path,
         "CREATE TEMP TABLE t AS SELECT * FROM ledger WHERE seq IN (3, 4);"
         "DELETE FROM ledger WHERE seq IN (3, 4);"
         "INSERT INTO ledger SELECT 7 - seq, time, tenant, stream, kind, payload, prev_hash, hash "
         "FROM t;");
  auto v = ledger::verify_file(path);
  BOOST_TEST(!v.ok);
  BOOST_TEST(v.first_bad_seq == 3);
  BOOST_TEST(v.reason.find("prev_hash does not match") != std::string::npos, v.reason);
}

BOOST_FIXTURE_TEST_CASE(the_database_refuses_edits, Db) {
  {
    ledger::SqliteLedger l(path);
    l.append(ev("e"));
  }
  Connection c(path, Connection::Mode::kReadWrite);
  BOOST_CHECK_EXCEPTION(
      c.exec("UPDATE ledger SET kind = 'x'"), storage::StorageError,
      [](const auto& e) { return std::string(e.what()).find("append-only") != std::string::npos; });
  BOOST_CHECK_THROW(c.exec("DELETE FROM ledger"), storage::StorageError);
}

// A command the storage refuses inside a group that commits (a read-only database fails the
// first write, not the transaction) marks the storage failing as a failed group does; a group
// that writes nothing (a worker's empty poll) does not clear it, a write does.
BOOST_FIXTURE_TEST_CASE(a_command_the_storage_refuses_marks_it_failing, Db) {
  ledger::SqliteLedger l(path);
  l.append(ev("before"));
  BOOST_CHECK_THROW(l.execute([](Connection&) -> std::vector<ledger::NewEvent> {
    throw storage::StorageError("attempt to write a readonly database", SQLITE_READONLY);
  }),
                    storage::StorageError);
  BOOST_REQUIRE(l.failing().has_value());
  BOOST_TEST(l.failing()->find("readonly") != std::string::npos, *l.failing());
  BOOST_TEST(l.failed_groups() == 1);
  // A command's own refusal (a conflict) is not the storage's.
  BOOST_CHECK_THROW(l.execute([](Connection&) -> std::vector<ledger::NewEvent> {
    throw storage::StorageError("UNIQUE constraint failed", SQLITE_CONSTRAINT);
  }),
                    storage::StorageError);
  BOOST_TEST(l.failed_groups() == 1);
  l.execute([](Connection&) { return std::vector<ledger::NewEvent>{}; });  // writes nothing
  BOOST_TEST(l.failing().has_value());
  l.append(ev("after"));
  BOOST_TEST(!l.failing());
}

BOOST_FIXTURE_TEST_CASE(a_failed_group_stores_nothing_and_the_next_one_works, Db) {
  ledger::SqliteLedger l(path);
  l.append(ev("before"));
  {
    Connection c(path, Connection::Mode::kReadWrite);
    c.exec(
        "CREATE TRIGGER poison BEFORE INSERT ON ledger WHEN NEW.kind = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END");
  }
  BOOST_TEST(!l.failing());
  BOOST_CHECK_THROW(l.append(std::vector<ledger::NewEvent>{ev("fine"), ev("poison")}),
                    storage::StorageError);
  BOOST_TEST(l.count() == 1);  // not even "fine" was stored
  // Counted, and failing (for /ready) until a group commits again.
  BOOST_TEST(l.failed_groups() == 1);
  BOOST_REQUIRE(l.failing().has_value());
  BOOST_TEST(l.failing()->find("poisoned row") != std::string::npos, *l.failing());
  auto after = l.append(ev("after"));
  BOOST_TEST(after.seq == 2);
  BOOST_TEST(!l.failing());
  BOOST_TEST(l.failed_groups() == 1);
  BOOST_TEST(l.verify().ok);
}

// A command without a waiting thread: its completion gets the events once they are durable, or
// its own error (the rest of the group is stored); every completion of a group has run by the
// time a later flush() returns.
BOOST_FIXTURE_TEST_CASE(asynchronous_commands_complete_after_their_group_commits, Db) {
  ledger::SqliteLedger l(path);
  std::mutex mu;
  std::vector<std::int64_t> seqs;
  std::vector<std::string> errors;
  std::promise<void> release;
  auto held = release.get_future().share();
  // Holds the writer inside a group so that the next commands queue up behind it.
  l.execute_async(
      [held](Connection&) -> std::vector<ledger::NewEvent> {
        held.wait();
        return {};
      },
      [](std::vector<ledger::Event>, std::exception_ptr) {});
  for (int i = 0; i < 3; ++i)
    l.execute_async(
        [i](Connection&) -> std::vector<ledger::NewEvent> {
          if (i == 1) throw std::runtime_error("precondition not met");
          return {ev("async." + std::to_string(i))};
        },
        [&](std::vector<ledger::Event> events, std::exception_ptr error) {
          std::lock_guard lock(mu);
          if (error) {
            try {
              std::rethrow_exception(error);
            } catch (const std::exception& e) {
              errors.push_back(e.what());
            }
          } else {
            BOOST_TEST(events.size() == 1u);
            // Durable when announced: a fresh connection reads it.
            Connection c(path, Connection::Mode::kReadOnly);
            auto st = c.prepare("SELECT kind FROM ledger WHERE seq = ?");
            st.bind(1, events.front().seq);
            BOOST_TEST(st.step());
            BOOST_TEST(st.text(0) == events.front().kind);
            seqs.push_back(events.front().seq);
          }
        });
  {
    std::lock_guard lock(mu);
    BOOST_TEST(seqs.empty());  // nothing answered while the writer is held
  }
  release.set_value();
  l.flush();
  std::lock_guard lock(mu);
  BOOST_TEST(seqs == (std::vector<std::int64_t>{1, 2}));
  BOOST_TEST(errors == std::vector<std::string>{"precondition not met"});
  BOOST_TEST(l.count() == 2);
  BOOST_TEST(l.async_failures() == 0);  // a caller was told; not an audit loss
  BOOST_TEST(l.verify().ok);
}

// Checkpoints run on the ledger's checkpointer thread instead of inside COMMIT on the writer:
// after ≈ 40 MB of events the pages are in the database file, the WAL has started over again and
// again instead of growing, and the chain verifies.
BOOST_FIXTURE_TEST_CASE(checkpoints_keep_the_wal_bounded_and_the_chain_whole, Db) {
  ledger::SqliteLedger l(path);
  const std::string filler(3500, 'x');
  const int groups = 100, per_group = 100;  // ≈ 10,000 WAL pages in all
  for (int g = 0; g < groups; ++g) {
    std::vector<ledger::NewEvent> batch;
    for (int i = 0; i < per_group; ++i) batch.push_back(ev("bulk", json::object{{"f", filler}}));
    l.append(std::move(batch));
  }
  for (int i = 0; i < 100 && l.checkpoints() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  BOOST_TEST(l.checkpoints() > 0);
  auto wal = path;
  wal += "-wal";
  // The checkpointer lets the WAL start over long before the writer's own bound (kWalLimitPages,
  // 8,000 pages) would: 1,600–2,600 pages here when the machine is quiet, up to ≈ 5,200 beside
  // other builds and tests; without it the WAL grows to the writer's bound and past it.
  const std::uintmax_t frame = 4096 + 24;  // a WAL frame: page and header
  BOOST_TEST(std::filesystem::file_size(wal) <
             static_cast<std::uintmax_t>(ledger::SqliteLedger::kWalLimitPages) * frame);
  BOOST_TEST(std::filesystem::file_size(path) > 20u * 1024 * 1024);  // copied into the database
  const auto v = l.verify();
  BOOST_TEST(v.ok);
  BOOST_TEST(v.checked == groups * per_group);
}

// The writer commits without waiting for the disk; nobody is answered before an fdatasync of
// the WAL that started after their group's commit — a synchronous append, an asynchronous
// command's completion, a flush.
BOOST_FIXTURE_TEST_CASE(every_answer_follows_a_sync_of_the_wal, Db) {
  ledger::SqliteLedger l(path);
  for (int i = 0; i < 5; ++i) {
    const auto before = l.syncs();
    l.append(ev("sync." + std::to_string(i)));
    BOOST_TEST(l.syncs() > before);
  }
  std::promise<std::int64_t> synced_at_done;
  const auto before = l.syncs();
  l.execute_async(
      [](Connection&) -> std::vector<ledger::NewEvent> { return {ev("async")}; },
      [&](std::vector<ledger::Event>, std::exception_ptr) { synced_at_done.set_value(l.syncs()); });
  BOOST_TEST(synced_at_done.get_future().get() > before);
  // Many callers at once: fewer syncs than groups is allowed, an answer without one is not.
  std::atomic<int> unsynced{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t)
    callers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        const auto at = l.syncs();
        l.append(ev("burst"));
        if (l.syncs() <= at) ++unsynced;
      }
    });
  for (auto& th : callers) th.join();
  BOOST_TEST(unsynced.load() == 0);
  BOOST_TEST(l.syncs() <= l.commit_stats().first + 1);  // a sync is never idle work
  BOOST_TEST(l.count() == 206);
  BOOST_TEST(l.verify().ok);
}

// Closing right after asynchronous writes: the groups still waiting for their sync are synced and
// answered before the writer's connection closes (closing the last connection checkpoints the
// WAL and deletes it; a sync after that found no file and refused everything as not durable).
BOOST_FIXTURE_TEST_CASE(closing_syncs_every_group_before_the_wal_goes, Db) {
  std::mutex mu;
  std::vector<std::string> errors;
  int answered = 0;
  const int rounds = 60, per_round = 20;
  for (int r = 0; r < rounds; ++r) {
    ledger::SqliteLedger l(path);
    for (int i = 0; i < per_round; ++i)
      l.execute_async([](Connection&) -> std::vector<ledger::NewEvent> { return {ev("closing")}; },
                      [&](std::vector<ledger::Event>, std::exception_ptr e) {
                        std::lock_guard lock(mu);
                        ++answered;
                        if (!e) return;
                        try {
                          std::rethrow_exception(e);
                        } catch (const std::exception& x) {
                          errors.push_back(x.what());
                        }
                      });
  }  // closes at once, groups in flight
  BOOST_TEST(answered == rounds * per_round);
  BOOST_TEST(errors.empty(), (errors.empty() ? std::string() : errors.front()));
  BOOST_TEST(ledger::verify_file(path).checked == rounds * per_round);
}

// When the WAL cannot be synced (here: its file is gone from the directory, as a failing disk
// would lose it) the groups it covered are answered with the error, and every write after it is
// refused: a later sync that succeeds proves nothing about the pages of the failed one.
BOOST_FIXTURE_TEST_CASE(a_failed_sync_fails_its_callers_and_every_write_after_it, Db) {
  ledger::SqliteLedger l(path);
  l.append(ev("before"));
  const std::string wal = path.string() + "-wal";
  std::filesystem::create_hard_link(wal, wal + ".keep");
  std::filesystem::remove(wal);
  BOOST_CHECK_THROW(l.append(ev("unsynced")), storage::StorageError);
  // The file is back: a sync would succeed now, and still nothing is accepted.
  std::filesystem::rename(wal + ".keep", wal);
  try {
    l.append(ev("after"));
    BOOST_FAIL("a write after a failed sync was accepted");
  } catch (const storage::StorageError& e) {
    BOOST_TEST(std::string(e.what()).find("-wal") != std::string::npos, e.what());
  }
  std::promise<bool> failed;
  l.execute_async([](Connection&) -> std::vector<ledger::NewEvent> { return {ev("async")}; },
                  [&](std::vector<ledger::Event>, std::exception_ptr e) {
                    failed.set_value(static_cast<bool>(e));
                  });
  BOOST_TEST(failed.get_future().get());
}

BOOST_FIXTURE_TEST_CASE(export_filters, Db) {
  ledger::SqliteLedger l(path);
  l.append(ev("a", json::object{}, "acme", "missions"));
  l.append(ev("b", json::object{}, "acme", "gates"));
  l.append(ev("c", json::object{}, "other", "missions"));
  auto kinds = [&](ledger::ExportFilter f) {
    std::string out;
    l.for_each(f, [&](const ledger::Event& e) { out += e.kind; });
    return out;
  };
  auto filter = [](auto set) {
    ledger::ExportFilter f;
    set(f);
    return f;
  };
  BOOST_TEST(kinds({}) == "abc");
  BOOST_TEST(kinds(filter([](auto& f) { f.tenant = "acme"; })) == "ab");
  BOOST_TEST(kinds(filter([](auto& f) { f.stream = "missions"; })) == "ac");
  BOOST_TEST(kinds(filter([](auto& f) { f.after_seq = 1; })) == "bc");
  BOOST_TEST(kinds(filter([](auto& f) { f.since_time = "2999-01-01"; })) == "");
  BOOST_TEST(kinds(filter([](auto& f) { f.since_time = "2000-01-01"; })) == "abc");
  BOOST_TEST(kinds(filter([](auto& f) { f.except_stream = "gates"; })) == "ac");
}

BOOST_AUTO_TEST_CASE(an_unwritable_location_is_a_clear_error) {
  BOOST_CHECK_EXCEPTION(ledger::SqliteLedger{"/proc/kiln/kiln.db"}, storage::StorageError,
                        [](const auto& e) {
                          return std::string(e.what()).find("storage.path") != std::string::npos;
                        });
}

BOOST_AUTO_TEST_CASE(path_segments_are_safe) {
  BOOST_TEST(ledger::path_segment("acme") == "acme");
  BOOST_TEST(ledger::path_segment("acme/site 1") == "acme%2Fsite%201");
  BOOST_TEST(ledger::path_segment("..") == "%2E.");
  BOOST_TEST(ledger::path_segment("") == "%00");
}

BOOST_FIXTURE_TEST_CASE(backfill_is_idempotent_and_notices_staleness, Db) {
  ledger::SqliteLedger l(path);
  for (int i = 0; i < 3; ++i) l.append(ev("m", json::object{{"i", i}}, "acme", "missions"));
  l.append(ev("g", json::object{}, "system", "gates"));
  const auto out = dir.path() / "export";
  auto reasons = [](const ledger::BackfillReport& r) {
    std::map<std::string, std::string> m;
    for (const auto& p : r.partitions) m[p.tenant + "/" + p.stream] = p.action + ":" + p.reason;
    return m;
  };

  auto first = ledger::backfill(l, out, {}, {}, false);
  BOOST_TEST(first.exported() == 2);
  BOOST_TEST(reasons(first)["acme/missions"] == "exported:no marker");
  std::ifstream in(out / "acme" / "missions.jsonl");
  std::vector<std::int64_t> seqs;
  for (std::string line; std::getline(in, line);)
    seqs.push_back(json::parse(line).at("seq").as_int64());
  BOOST_TEST(seqs == (std::vector<std::int64_t>{1, 2, 3}));

  auto again = ledger::backfill(l, out, {}, {}, false);
  BOOST_TEST(again.exported() == 0);
  BOOST_TEST(again.skipped() == 2);

  l.append(ev("m", json::object{}, "acme", "missions"));
  auto grown = reasons(ledger::backfill(l, out, {}, {}, false));
  BOOST_TEST(grown["acme/missions"].find("exported:marker stale") == 0u, grown["acme/missions"]);
  BOOST_TEST(grown["system/gates"] == "up to date:");

  std::filesystem::remove(out / "system" / "gates.marker.json");
  BOOST_TEST(reasons(ledger::backfill(l, out, {}, {}, false))["system/gates"] ==
             "exported:no marker");

  std::ofstream(out / "system" / "gates.jsonl", std::ios::app) << "{}\n";
  BOOST_TEST(reasons(ledger::backfill(l, out, {}, {}, false))["system/gates"].find(
                 "exported:file changed") == 0u);

  auto forced = ledger::backfill(l, out, std::string("acme"), {}, true);
  BOOST_TEST(forced.partitions.size() == 1u);
  BOOST_TEST(forced.exported() == 1);
  BOOST_TEST(forced.partitions[0].reason == "forced");
  BOOST_TEST(forced.partitions[0].count == 4);
}

BOOST_FIXTURE_TEST_CASE(two_writers_on_one_file_keep_one_chain, Db) {
  // e.g. `kiln gate run` appending next to a running `kiln serve`
  ledger::SqliteLedger a(path);
  ledger::SqliteLedger b(path);
  for (int i = 0; i < 20; ++i) {
    BOOST_REQUIRE_NO_THROW(a.append(ev("from-a")));
    BOOST_REQUIRE_NO_THROW(b.append(ev("from-b")));
  }
  BOOST_TEST(a.count() == 40);
  BOOST_TEST(a.verify().ok);
}

// Times as the ledger writes them; before 1970 (a retention cutoff a century back) the
// milliseconds and the second are floored, not truncated toward zero.
BOOST_AUTO_TEST_CASE(times_are_written_floored_to_the_millisecond) {
  using namespace std::chrono;
  const auto at = [](std::int64_t ms) { return system_clock::time_point(milliseconds(ms)); };
  BOOST_TEST(ledger::utc_millis(at(0)) == "1970-01-01T00:00:00.000Z");
  BOOST_TEST(ledger::utc_millis(at(1796420004123)) == "2026-12-04T21:33:24.123Z");
  BOOST_TEST(ledger::utc_millis(at(-1500)) == "1969-12-31T23:59:58.500Z");
  BOOST_TEST(ledger::utc_millis(at(-1000)) == "1969-12-31T23:59:59.000Z");
  BOOST_TEST(ledger::utc_millis(at(-1)) == "1969-12-31T23:59:59.999Z");
}
