// Telemetry ingestion without HTTP: batches that arrive while the ledger's writer is busy are
// stored by one command under one telemetry.batches event; a duplicate or a replay inside such a
// group is still told apart; a store that fails answers every batch of its group with the error.
#define BOOST_TEST_MODULE telemetry_ingest
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/sha256.hpp"
#include "common/strings.hpp"
#include "ledger/ledger.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"
#include "telemetry/devices.hpp"
#include "telemetry/envelope.hpp"
#include "telemetry/ingest.hpp"
#include "telemetry/recorder.hpp"
#include "telemetry/sessions.hpp"

namespace json = boost::json;
using namespace kiln;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

telemetry::IngestOptions small_inbox() {
  telemetry::IngestOptions o;
  o.inbox_batches = 3;
  o.inbox_interval = std::chrono::hours(1);
  return o;
}

struct Fixture {
  test::TempDir dir;
  ledger::SqliteLedger ledger{dir.path() / "kiln.db"};
  telemetry::DeviceRegistry devices{ledger, ledger.path()};
  telemetry::Ingestor ingestor{ledger, devices, telemetry::IngestOptions{}};
  std::map<std::string, telemetry::KeyPair> keys;
  Fixture() { ledger.add_projector(&telemetry::project_devices); }

  // Runs SQL on the database through a connection of its own (another writer, as a person or a
  // failing disk would).
  void sql(const std::string& statements) {
    storage::Connection c(ledger.path(), storage::Connection::Mode::kReadWrite);
    c.exec(statements);
  }

  std::int64_t rows(const std::string& table) {
    storage::Connection c(ledger.path(), storage::Connection::Mode::kReadOnly);
    auto st = c.prepare("SELECT count(*) FROM " + table);
    BOOST_REQUIRE(st.step());
    return st.int64(0);
  }

  std::string envelope(const std::string& device, std::uint64_t seq, double bt = 150) {
    if (!keys.count(device))
      keys[device] =
          devices.add("acme", device, std::nullopt, missions::Actor{"test", missions::Role::kAdmin})
              .key;
    telemetry::Batch b;
    b.device = {device, 1};
    b.seq = seq;
    b.sent_at = now_s();
    for (int i = 0; i < 10; ++i) {
      telemetry::Sample s;
      s.t = now_s() - 1000 + static_cast<double>(seq) * 10 + i;
      s.bt = bt + i;
      s.et = 200;
      b.samples.push_back(s);
    }
    return telemetry::sign_envelope(b, keys[device], "acme", device);
  }

  // Keeps the ledger's writer inside a group until the returned promise is set.
  std::promise<void> hold_writer() {
    std::promise<void> release;
    auto held = release.get_future().share();
    std::promise<void> holding;
    auto started = holding.get_future();
    ledger.execute_async(
        [held, &holding](storage::Connection&) -> std::vector<ledger::NewEvent> {
          holding.set_value();
          held.wait();
          return {};
        },
        [](std::vector<ledger::Event>, std::exception_ptr) {});
    started.wait();
    return release;
  }

  std::vector<ledger::Event> events(const std::string& kind) {
    std::vector<ledger::Event> out;
    ledger.for_each({}, [&](const ledger::Event& e) {
      if (e.kind == kind) out.push_back(e);
    });
    return out;
  }
};

struct Answers {
  std::mutex mu;
  std::vector<telemetry::IngestResult> results;
  std::vector<std::exception_ptr> errors;
  telemetry::Ingestor::Done collect() {
    return [this](telemetry::IngestResult r, std::exception_ptr e) {
      std::lock_guard lock(mu);
      results.push_back(std::move(r));
      errors.push_back(e);
    };
  }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(batches_arriving_together_share_one_store_and_one_event, Fixture) {
  std::vector<std::string> envelopes;
  for (int d = 0; d < 5; ++d) envelopes.push_back(envelope("dev-" + std::to_string(d), 1));
  const std::string replay = envelope("dev-1", 1, 170);  // seq 1 again, other readings
  const double now = now_s();
  Answers answers;
  auto release = hold_writer();
  for (const auto& e : envelopes) {
    const std::string device = "dev-" + std::to_string(&e - envelopes.data());
    ingestor.ingest_async("acme", device, e, now, answers.collect());
  }
  ingestor.ingest_async("acme", "dev-0", envelopes[0], now, answers.collect());  // the same again
  ingestor.ingest_async("acme", "dev-1", replay, now, answers.collect());
  {
    std::lock_guard lock(answers.mu);
    BOOST_TEST(answers.results.empty());  // nobody is answered before the batches are durable
  }
  release.set_value();
  ledger.flush();
  std::lock_guard lock(answers.mu);
  BOOST_REQUIRE(answers.results.size() == 7u);
  int stored = 0, duplicates = 0, replays = 0;
  std::set<std::int64_t> ledger_seqs;
  for (std::size_t i = 0; i < answers.results.size(); ++i) {
    const auto& r = answers.results[i];
    BOOST_TEST(!answers.errors[i]);
    if (r.accepted && !r.duplicate) {
      ++stored;
      ledger_seqs.insert(r.ledger_seq);
    }
    duplicates += r.duplicate;
    if (r.reason == telemetry::reject::kReplayedSequence) {
      ++replays;
      BOOST_TEST(r.device == "dev-1");
      BOOST_TEST(r.http_status() == 409);
    }
  }
  BOOST_TEST(stored == 5);
  BOOST_TEST(duplicates == 1);
  BOOST_TEST(replays == 1);
  // One event for the five, listing each batch with its digest.
  auto batches = events("telemetry.batches");
  BOOST_REQUIRE(batches.size() == 1u);
  BOOST_TEST(ledger_seqs == std::set<std::int64_t>{batches[0].seq});
  auto listed = json::parse(batches[0].payload).at("batches").as_array();
  BOOST_TEST(listed.size() == 5u);
  for (const auto& b : listed) BOOST_TEST(b.at("digest").as_string().size() == 64u);
  ledger.flush();  // refusals are audit events, queued by the answers above
  BOOST_TEST(events("telemetry.rejected").size() == 1u);  // the replay
  BOOST_TEST(rows("telemetry_all") == 5);
  BOOST_TEST(rows("telemetry_inbox") == 5);  // not moved yet (4096 batches or 2 s)
  BOOST_TEST(ingestor.accepted_batches() == 5);
  BOOST_TEST(ledger.verify().ok);
}

// A dry run makes every check and answers as ingestion would — accepted, a duplicate of what is
// stored, a replay, a refusal — storing, counting and recording nothing, and leaving the sequence
// window where it was.
BOOST_FIXTURE_TEST_CASE(a_dry_run_checks_an_envelope_and_changes_nothing, Fixture) {
  const std::string first = envelope("r1", 1);
  const double now = now_s();
  auto dry = ingestor.check_only("acme", "r1", first, now);
  BOOST_TEST(dry.accepted);
  BOOST_TEST(dry.dry_run);
  BOOST_TEST(!dry.duplicate);
  BOOST_TEST(dry.seq == 1u);
  BOOST_TEST(dry.samples == 10u);
  BOOST_TEST(dry.to_json().at("dry_run").as_bool());
  BOOST_TEST(rows("telemetry_all") == 0);
  BOOST_TEST(events("telemetry.batches").empty());
  BOOST_TEST(ingestor.accepted_batches() == 0);
  // Refusals: answered with their reason, neither counted nor in the ledger.
  std::string forged = envelope("r1", 2);
  forged[forged.size() - 1] ^= 1;  // the signature's last byte
  auto bad = ingestor.check_only("acme", "r1", forged, now);
  BOOST_TEST(!bad.accepted);
  BOOST_TEST(bad.reason == "bad_signature");
  BOOST_TEST(bad.dry_run);
  BOOST_TEST(ingestor.check_only("acme", "r1", first, now - 3600).reason == "clock_skew");
  BOOST_TEST(ingestor.check_only("acme", "r1", std::string(70000, 'x'), now).reason ==
             "oversized_batch");
  BOOST_TEST(ingestor.rejected().empty());
  BOOST_TEST(events("telemetry.rejected").empty());
  // Stored for real, the same envelope is a duplicate and other content a replay.
  BOOST_TEST(ingestor.ingest("acme", "r1", first, now).accepted);
  auto again = ingestor.check_only("acme", "r1", first, now);
  BOOST_TEST(again.accepted);
  BOOST_TEST(again.duplicate);
  auto replay = ingestor.check_only("acme", "r1", envelope("r1", 1, 170), now);
  BOOST_TEST(replay.reason == "replayed_sequence");
  BOOST_TEST(replay.http_status() == 409);
  // A dry run far ahead does not move the window: a batch just behind the stored one still fits.
  BOOST_TEST(ingestor.check_only("acme", "r1", envelope("r1", 500), now).accepted);
  BOOST_TEST(ingestor.ingest("acme", "r1", envelope("r1", 2), now).accepted);
  BOOST_TEST(ingestor.rejected().empty());
  BOOST_TEST(events("telemetry.rejected").empty());
  BOOST_TEST(ingestor.accepted_batches() == 2);
}

BOOST_FIXTURE_TEST_CASE(a_store_that_fails_answers_every_batch_of_its_group, Fixture) {
  const std::string a = envelope("dev-a", 1), b = envelope("dev-b", 1);
  sql("CREATE TRIGGER full_disk BEFORE INSERT ON telemetry_inbox WHEN NEW.device = 'dev-b' "
      "BEGIN SELECT RAISE(ABORT, 'no space left'); END");
  Answers answers;
  auto release = hold_writer();
  ingestor.ingest_async("acme", "dev-a", a, now_s(), answers.collect());
  ingestor.ingest_async("acme", "dev-b", b, now_s(), answers.collect());
  release.set_value();
  ledger.flush();
  {
    std::lock_guard lock(answers.mu);
    BOOST_REQUIRE(answers.results.size() == 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      BOOST_TEST(static_cast<bool>(answers.errors[i]));  // both: they shared the failed store
      BOOST_TEST(!answers.results[i].accepted);
    }
  }
  BOOST_TEST(ingestor.accepted_batches() == 0);
  BOOST_TEST(events("telemetry.batches").empty());
  // The blocking call throws the storage error; once the cause is gone both are stored.
  BOOST_CHECK_THROW(ingestor.ingest("acme", "dev-b", b, now_s()), storage::StorageError);
  sql("DROP TRIGGER full_disk");
  BOOST_TEST(ingestor.ingest("acme", "dev-a", a, now_s()).accepted);
  auto again = ingestor.ingest("acme", "dev-b", b, now_s());
  BOOST_TEST(again.accepted);
  BOOST_TEST(!again.duplicate);
  BOOST_TEST(ingestor.accepted_batches() == 2);
}

// Stored batches wait in the inbox (no indexes) and move to telemetry_batches in passes; a
// duplicate or a replay is found in either place, also by another ledger writer on the same file
// (another kiln process), and readers see both.
BOOST_FIXTURE_TEST_CASE(the_inbox_moves_in_passes_and_duplicates_are_found_in_both_places,
                        Fixture) {
  telemetry::Ingestor small(ledger, devices, small_inbox());
  std::vector<std::string> sent;
  for (std::uint64_t seq = 1; seq <= 5; ++seq) {
    sent.push_back(envelope("dev-m", seq));
    auto r = small.ingest("acme", "dev-m", sent.back(), now_s());
    BOOST_TEST((r.accepted && !r.duplicate), r.message);
  }
  BOOST_TEST(small.inbox_moves() == 1);  // at the third batch
  BOOST_TEST(rows("telemetry_batches") == 3);
  BOOST_TEST(rows("telemetry_inbox") == 2);
  BOOST_TEST(small.ingest("acme", "dev-m", sent[1], now_s()).duplicate);  // moved
  BOOST_TEST(small.ingest("acme", "dev-m", sent[4], now_s()).duplicate);  // in the inbox
  BOOST_TEST(small.ingest("acme", "dev-m", envelope("dev-m", 2, 170), now_s()).reason ==
             telemetry::reject::kReplayedSequence);
  BOOST_TEST(small.ingest("acme", "dev-m", envelope("dev-m", 5, 170), now_s()).reason ==
             telemetry::reject::kReplayedSequence);
  // Another writer on the same database: it finds what the first stored, and the first finds
  // what it stores (the inbox is read again when another connection has committed).
  {
    ledger::SqliteLedger other_ledger(ledger.path());
    telemetry::DeviceRegistry other_devices(other_ledger, ledger.path());
    telemetry::Ingestor other(other_ledger, other_devices, small_inbox());
    BOOST_TEST(other.ingest("acme", "dev-m", sent[4], now_s()).duplicate);
    sent.push_back(envelope("dev-m", 6));
    auto r = other.ingest("acme", "dev-m", sent.back(), now_s());
    BOOST_TEST((r.accepted && !r.duplicate), r.message);
  }
  BOOST_TEST(small.ingest("acme", "dev-m", sent[5], now_s()).duplicate);
  BOOST_TEST(rows("telemetry_all") == 6);
  BOOST_TEST(rows("telemetry_batches") + rows("telemetry_inbox") == 6);
  // Readers see every batch, wherever it is.
  telemetry::SessionInfo session;
  session.tenant = "acme";
  session.device = "dev-m";
  session.start_t = 0;
  BOOST_TEST(telemetry::Sessionizer::samples(ledger.path(), session).size() == 60u);
  BOOST_TEST(ledger.verify().ok);
}

// A group can fail at its end, after the store command ran (here: an audit event of the same
// group that cannot be written): everything of the group is rolled back, and the batch sent
// again is stored — not taken for a duplicate of a row that no longer exists.
BOOST_FIXTURE_TEST_CASE(a_batch_whose_group_failed_is_stored_when_sent_again, Fixture) {
  const std::string e = envelope("dev-f", 1);
  sql("CREATE TRIGGER poison BEFORE INSERT ON ledger WHEN NEW.kind = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END");
  Answers answers;
  auto release = hold_writer();
  ingestor.ingest_async("acme", "dev-f", e, now_s(), answers.collect());
  ledger.append_async({ledger::NewEvent{"acme", "audit", "poison", json::object{}}});
  release.set_value();
  ledger.flush();
  {
    std::lock_guard lock(answers.mu);
    BOOST_REQUIRE(answers.results.size() == 1u);
    BOOST_TEST(static_cast<bool>(answers.errors[0]));
  }
  BOOST_TEST(rows("telemetry_all") == 0);
  auto again = ingestor.ingest("acme", "dev-f", e, now_s());
  BOOST_TEST(again.accepted);
  BOOST_TEST(!again.duplicate);
  BOOST_TEST(rows("telemetry_all") == 1);
}

// The group fails before the store command runs (an audit event ahead of it cannot be written):
// the staged batch is answered with the error, and ingestion goes on — no batch is left without
// an answer and no later one waits for a store that will never come.
BOOST_FIXTURE_TEST_CASE(a_group_that_fails_before_the_store_answers_the_staged_batches, Fixture) {
  const std::string e = envelope("dev-g", 1);
  sql("CREATE TRIGGER poison BEFORE INSERT ON ledger WHEN NEW.kind = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END");
  auto release = hold_writer();
  ledger.append_async({ledger::NewEvent{"acme", "audit", "poison", json::object{}}});
  std::promise<bool> failed;
  ingestor.ingest_async("acme", "dev-g", e, now_s(),
                        [&](telemetry::IngestResult r, std::exception_ptr error) {
                          failed.set_value(error && !r.accepted);
                        });
  release.set_value();
  auto answer = failed.get_future();
  BOOST_REQUIRE(answer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  BOOST_TEST(answer.get());
  std::promise<telemetry::IngestResult> next;
  ingestor.ingest_async(
      "acme", "dev-g", e, now_s(),
      [&](telemetry::IngestResult r, std::exception_ptr) { next.set_value(std::move(r)); });
  auto stored = next.get_future();
  BOOST_REQUIRE(stored.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto r = stored.get();
  BOOST_TEST(r.accepted);
  BOOST_TEST(!r.duplicate);
}

// The store ran, then its own item was rolled back (its ledger event refused): the rows are
// gone, and the batch sent again is stored, not taken for a duplicate.
BOOST_FIXTURE_TEST_CASE(a_store_rolled_back_after_it_ran_is_stored_when_sent_again, Fixture) {
  const std::string e = envelope("dev-r", 1);
  sql("CREATE TRIGGER refuse_batches BEFORE INSERT ON ledger WHEN NEW.kind = "
      "'telemetry.batches' AND NOT EXISTS (SELECT 1 FROM ledger WHERE kind = 'unblock') "
      "BEGIN SELECT RAISE(ABORT, 'not now'); END");
  ledger.append(ledger::NewEvent{"acme", "audit", "started", json::object{}});
  BOOST_CHECK_THROW(ingestor.ingest("acme", "dev-r", e, now_s()), storage::StorageError);
  BOOST_TEST(rows("telemetry_all") == 0);
  // Unblocked through the writer itself: no other connection commits, so nothing but the
  // rollback tells the store that what it remembers is gone.
  ledger.append(ledger::NewEvent{"acme", "audit", "unblock", json::object{}});
  auto again = ingestor.ingest("acme", "dev-r", e, now_s());
  BOOST_TEST(again.accepted);
  BOOST_TEST(!again.duplicate);
  BOOST_TEST(rows("telemetry_all") == 1);
}

// A key that reaches telemetry_batches from elsewhere while its batch waits in the inbox (another
// writer on the file, a restored backup) stops the move: the store fails with the conflict, its
// batches are answered with the error, and nothing moves or is lost — the unique key is the last
// word, never skipped in silence.
BOOST_FIXTURE_TEST_CASE(a_key_already_in_the_indexed_table_stops_the_move_with_an_error, Fixture) {
  telemetry::Ingestor small(ledger, devices, small_inbox());
  for (std::uint64_t seq = 1; seq <= 2; ++seq) {
    auto r = small.ingest("acme", "dev-k", envelope("dev-k", seq), now_s());
    BOOST_TEST((r.accepted && !r.duplicate), r.message);
  }
  BOOST_TEST(rows("telemetry_inbox") == 2);
  sql("INSERT INTO telemetry_batches (tenant, device, boot, seq, kid, digest, sent_at, "
      "received_at, first_t, last_t, count, samples) VALUES ('acme', 'dev-k', 1, 2, 'k', 'other', "
      "0, '2026-01-01T00:00:00.000Z', 0, 0, 1, '[]')");
  // The third batch fills the inbox and starts the move.
  BOOST_CHECK_EXCEPTION(small.ingest("acme", "dev-k", envelope("dev-k", 3), now_s()),
                        std::exception, [](const std::exception& e) {
                          return std::string(e.what()).find("UNIQUE") != std::string::npos;
                        });
  BOOST_TEST(small.inbox_moves() == 0);
  BOOST_TEST(rows("telemetry_inbox") == 2);    // seq 1 and 2, as before
  BOOST_TEST(rows("telemetry_batches") == 1);  // only the conflicting row
  BOOST_TEST(small.accepted_batches() == 2);
  BOOST_TEST(ledger.verify().ok);
}

// A batch is stored as the signed envelope it arrived in: the row's bytes hash to its digest and
// still verify with the device's key. Batches stored before migration 8 (JSON rows) survive it,
// in both tables, and readers take both kinds. A row must hold exactly one of the two.
BOOST_AUTO_TEST_CASE(batches_are_stored_as_their_signed_envelopes_and_older_rows_still_read) {
  test::TempDir dir;
  const auto path = dir.path() / "kiln.db";
  {
    std::vector<storage::Migration> up_to_7;
    for (const auto& m : storage::kernel_migrations())
      if (m.version <= 7) up_to_7.push_back(m);
    storage::Connection c(path, storage::Connection::Mode::kReadWrite);
    BOOST_REQUIRE(storage::migrate(c, up_to_7).version == 7);
    const double t = now_s() - 1000;
    for (const char* table : {"telemetry_batches", "telemetry_inbox"}) {
      auto st = c.prepare(std::string("INSERT INTO ") + table +
                          " (tenant, device, boot, seq, kid, digest, sent_at, received_at, "
                          "first_t, last_t, count, samples) VALUES ('acme', 'dev-e', 1, ?, 'k0', "
                          "'d', 0, '2026-12-01T00:00:00.000Z', ?, ?, 1, ?)");
      const bool batches = std::string(table) == "telemetry_batches";
      const double at = batches ? t - 20 : t - 10;
      st.bind(1, batches ? 1 : 2).bind_real(2, at).bind_real(3, at);
      st.bind(4, json::serialize(telemetry::samples_json({telemetry::Sample{at, 101, 201}})));
      st.step();
    }
  }
  ledger::SqliteLedger ledger(path);  // migrates to the latest version
  ledger.add_projector(&telemetry::project_devices);
  telemetry::DeviceRegistry devices(ledger, ledger.path());
  telemetry::Ingestor ingestor(ledger, devices, telemetry::IngestOptions{});
  const auto key =
      devices.add("acme", "dev-e", std::nullopt, missions::Actor{"test", missions::Role::kAdmin})
          .key;
  telemetry::Batch b;
  b.device = {"dev-e", 1};
  b.seq = 3;
  b.sent_at = now_s();
  for (int i = 0; i < 10; ++i) b.samples.push_back(telemetry::Sample{now_s() - 5 + i, 150, 210});
  const std::string e = telemetry::sign_envelope(b, key, "acme", "dev-e");
  auto r = ingestor.ingest("acme", "dev-e", e, now_s());
  BOOST_TEST((r.accepted && !r.duplicate), r.message);

  storage::Connection c(path, storage::Connection::Mode::kReadOnly);
  auto row = c.prepare(
      "SELECT digest, samples IS NULL, envelope FROM telemetry_all WHERE device = 'dev-e' AND "
      "seq = 3");
  BOOST_REQUIRE(row.step());
  BOOST_TEST(row.int64(1) == 1);  // no JSON copy
  const std::string stored = row.blob(2);
  BOOST_TEST((stored == e));
  BOOST_TEST(common::sha256_hex(stored) == row.text(0));
  telemetry::EnvelopeError err;
  auto parsed = telemetry::detail::parse_envelope(stored, "acme", "dev-e", &err);
  BOOST_REQUIRE(parsed.has_value());
  BOOST_TEST(telemetry::detail::verify(*parsed, key.pub));

  telemetry::SessionInfo session;
  session.tenant = "acme";
  session.device = "dev-e";
  session.start_t = 0;
  const auto samples = telemetry::Sessionizer::samples(path, session);
  BOOST_TEST(samples.size() == 12u);  // one JSON row in each table, ten from the envelope
  BOOST_TEST(samples.front().bt == 101);
  BOOST_TEST(samples.back().bt == 150);

  storage::Connection w(path, storage::Connection::Mode::kReadWrite);
  for (const char* values : {"NULL, NULL", "'[]', x'00'"})
    BOOST_CHECK_THROW(w.exec(std::string("INSERT INTO telemetry_inbox (tenant, device, boot, seq, "
                                         "kid, digest, sent_at, received_at, first_t, last_t, "
                                         "count, samples, envelope) VALUES ('acme', 'dev-e', 1, "
                                         "9, 'k', 'd', 0, 'x', 0, 0, 1, ") +
                             values + ")"),
                      storage::StorageError);
}

// A key id is a tenant's (migration 15): a tenant that registers another's public key first does
// not keep that tenant from registering it, and neither tenant's envelopes pass for the other.
// Within a tenant a key still serves one device. Keys registered before the migration stay.
BOOST_AUTO_TEST_CASE(device_key_ids_are_per_tenant) {
  test::TempDir dir;
  const auto path = dir.path() / "kiln.db";
  const missions::Actor admin{"test", missions::Role::kAdmin};
  telemetry::KeyPair old_key = telemetry::generate_key("");
  old_key.kid = telemetry::key_id(old_key.pub);
  {
    std::vector<storage::Migration> up_to_14;
    for (const auto& m : storage::kernel_migrations())
      if (m.version <= 14) up_to_14.push_back(m);
    storage::Connection c(path, storage::Connection::Mode::kReadWrite);
    BOOST_REQUIRE(storage::migrate(c, up_to_14).version == 14);
    auto st = c.prepare(
        "INSERT INTO device_keys (kid, tenant, device, public_key, created_at, created_by) VALUES "
        "(?, 'acme', 'dev-old', ?, '2026-12-01T00:00:00.000Z', 'test')");
    st.bind(1, old_key.kid).bind(2, telemetry::to_hex(old_key.pub.data(), old_key.pub.size()));
    st.step();
  }
  ledger::SqliteLedger ledger(path);  // migrates to the latest version
  ledger.add_projector(&telemetry::project_devices);
  telemetry::DeviceRegistry devices(ledger, ledger.path());
  auto kept = devices.find("acme", old_key.kid);
  BOOST_REQUIRE(kept.has_value());
  BOOST_TEST(kept->device == "dev-old");

  // globex registers acme's device key first; acme registers it all the same.
  const auto theirs = devices.add("globex", "squat", old_key.pub, admin);
  BOOST_TEST(theirs.key.kid == old_key.kid);
  const auto pair = telemetry::generate_key("");
  devices.add("globex", "dev-a", pair.pub, admin);
  const auto acme = devices.add("acme", "dev-a", pair.pub, admin);
  BOOST_TEST(acme.key.kid == telemetry::key_id(pair.pub));
  BOOST_TEST(devices.find("acme", acme.key.kid)->device == "dev-a");
  BOOST_TEST(devices.find("globex", acme.key.kid)->device == "dev-a");
  BOOST_TEST(devices.list(std::string("acme")).size() == 2u);
  BOOST_TEST(devices.list(std::nullopt).size() == 4u);
  // Within a tenant, another device may not take a key that is registered.
  try {
    devices.add("acme", "dev-b", pair.pub, admin);
    BOOST_FAIL("a key registered in the tenant was registered again");
  } catch (const missions::MissionError& e) {
    BOOST_TEST((e.code() == missions::MissionError::Code::kConflict));
    BOOST_TEST(std::string(e.what()).find("for device dev-a") != std::string::npos, e.what());
  }
  // Revoking in one tenant leaves the other's registration alone.
  BOOST_TEST(devices.revoke("globex", acme.key.kid, admin).size() == 1u);
  BOOST_TEST(devices.find("globex", acme.key.kid)->revoked_at.has_value());
  BOOST_TEST(!devices.find("acme", acme.key.kid)->revoked_at.has_value());
  // Revoked again: the refusal speaks of the key it was given (and when), or of the device.
  auto again = [&](const std::string& what) {
    try {
      devices.revoke("globex", what, admin);
    } catch (const missions::MissionError& e) {
      BOOST_TEST((e.code() == missions::MissionError::Code::kInvalidState));
      return std::string(e.what());
    }
    return std::string("(not refused)");
  };
  const auto by_kid = again(common::to_upper(acme.key.kid));
  BOOST_TEST(by_kid.starts_with("device key " + acme.key.kid + " is revoked already (at 20"),
             by_kid);
  const auto by_device = again("dev-a");
  BOOST_TEST(by_device == "every key of device 'dev-a' is revoked already", by_device);
}

// A batch behind the device's window that is stored already — a spooled batch sent again after
// the device's next boot, or far behind its sequence, because a power cut undid the spool's
// removal of it — is a duplicate, answered as stored; one behind it that is not stored is refused
// as before. Both were refused (stale_boot, stale_sequence) and the spooled copy put aside.
BOOST_FIXTURE_TEST_CASE(a_stored_batch_sent_again_behind_the_window_is_a_duplicate, Fixture) {
  envelope("dev-a", 1);  // registers the device's key
  auto sign = [&](std::uint64_t boot, std::uint64_t seq) {
    telemetry::Batch b;
    b.device = {"dev-a", boot};
    b.seq = seq;
    b.sent_at = now_s();
    for (int i = 0; i < 10; ++i) {
      telemetry::Sample x;
      x.t = now_s() - 100 + i;
      x.bt = 150;
      x.et = 200;
      b.samples.push_back(x);
    }
    return telemetry::sign_envelope(b, keys["dev-a"], "acme", "dev-a");
  };
  const auto b1s1 = sign(1, 1), b1s2 = sign(1, 2), b1s100 = sign(1, 100), b2s1 = sign(2, 1);
  BOOST_TEST(ingestor.ingest("acme", "dev-a", b1s1, now_s()).accepted);
  BOOST_TEST(ingestor.ingest("acme", "dev-a", b1s100, now_s()).accepted);
  auto behind = ingestor.ingest("acme", "dev-a", b1s1, now_s());  // 99 behind, the window 64
  BOOST_TEST(behind.accepted);
  BOOST_TEST(behind.duplicate);
  auto never = ingestor.ingest("acme", "dev-a", b1s2, now_s());
  BOOST_TEST(!never.accepted);
  BOOST_TEST(never.reason == "stale_sequence");
  BOOST_TEST(ingestor.ingest("acme", "dev-a", b2s1, now_s()).accepted);  // the next boot
  auto older_boot = ingestor.ingest("acme", "dev-a", b1s100, now_s());
  BOOST_TEST(older_boot.accepted);
  BOOST_TEST(older_boot.duplicate);
  never = ingestor.ingest("acme", "dev-a", b1s2, now_s());
  BOOST_TEST(!never.accepted);
  BOOST_TEST(never.reason == "stale_boot");
  // A dry run answers the same.
  auto dry = ingestor.check_only("acme", "dev-a", b1s1, now_s());
  BOOST_TEST((dry.accepted && dry.duplicate && dry.dry_run));
  dry = ingestor.check_only("acme", "dev-a", b1s2, now_s());
  BOOST_TEST(!dry.accepted);
  BOOST_TEST(dry.reason == "stale_boot");
  BOOST_TEST(ingestor.accepted_batches() == 3);
  BOOST_TEST(rows("telemetry_all") == 3);
}

// A driver of `total` readings a second apart (paced by its caller), then ended; it waits
// before reading `pause_at` until the test lets it go on.
class StepDriver : public nodes::TelemetryDriver {
 public:
  StepDriver(int total, int pause_at) : total_(total), pause_at_(pause_at) {}
  Result<nodes::DriverInfo, ToolError> open() override {
    nodes::DriverInfo info;
    info.model = "test steps";
    info.interval_s = 1;
    info.paced_by_device = false;
    return info;
  }
  Result<telemetry::Sample, ToolError> read() override {
    if (given_ == pause_at_) go_on_.wait(false);
    if (given_ >= total_) return tool_error(nodes::driver_error::kEnded, "no more readings");
    telemetry::Sample s;
    s.t = now_s() + given_;
    s.bt = 150 + given_ * 0.1;
    s.et = 200;
    ++given_;
    return s;
  }
  std::optional<ToolError> command(const nodes::DriverCommand&) override { return std::nullopt; }
  void close() override {}
  int given() const { return given_.load(); }
  void go_on() {
    go_on_ = true;
    go_on_.notify_all();
  }

 private:
  const int total_, pause_at_;
  std::atomic<int> given_{0};
  std::atomic<bool> go_on_{false};
};

// The recorder inside `kiln serve` while the storage fails (a full disk, here a trigger that
// refuses every batch): it keeps the signed batches in memory, in order, and stores them once
// the storage takes them again — it ended the whole server before (an uncaught StorageError on
// its thread).
BOOST_FIXTURE_TEST_CASE(the_recorder_holds_what_the_storage_refuses_and_stores_it_later, Fixture) {
  const auto creds =
      devices.add("acme", "rec-1", std::nullopt, missions::Actor{"test", missions::Role::kAdmin});
  sql("CREATE TRIGGER full_disk BEFORE INSERT ON telemetry_inbox "
      "BEGIN SELECT RAISE(ABORT, 'no space left'); END");
  auto driver = std::make_shared<StepDriver>(60, 30);
  telemetry::Recorder recorder(driver, creds, ingestor, 50.0, 10);
  recorder.start();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (driver->given() < 30 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  BOOST_REQUIRE(driver->given() == 30);  // three batches made, none stored
  BOOST_TEST(recorder.batches() == 0);
  BOOST_TEST(rows("telemetry_all") == 0);
  sql("DROP TRIGGER full_disk");
  driver->go_on();
  while (recorder.batches() < 6 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  recorder.stop();
  BOOST_TEST(recorder.batches() == 6);
  // All six, each once, in the order they were read.
  storage::Connection c(ledger.path(), storage::Connection::Mode::kReadOnly);
  auto st = c.prepare("SELECT seq, first_t FROM telemetry_all WHERE device = 'rec-1' ORDER BY seq");
  std::vector<std::int64_t> seqs;
  double last_t = 0;
  while (st.step()) {
    seqs.push_back(st.int64(0));
    BOOST_TEST(st.real(1) > last_t);
    last_t = st.real(1);
  }
  BOOST_TEST(seqs == (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}),
             boost::test_tools::per_element());
}

// The readings of a batch not yet full when the readings end or the recorder stops (kiln serve
// ending) go as one more batch: the last seconds of a roast were dropped at every stop.
BOOST_FIXTURE_TEST_CASE(the_recorder_sends_its_last_readings_when_they_end_or_it_stops, Fixture) {
  const missions::Actor admin{"test", missions::Role::kAdmin};
  auto stored = [&](const std::string& device, std::int64_t* batches, std::int64_t* readings) {
    storage::Connection c(ledger.path(), storage::Connection::Mode::kReadOnly);
    auto st =
        c.prepare("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM telemetry_all WHERE device = ?");
    st.bind(1, device);
    BOOST_REQUIRE(st.step());
    *batches = st.int64(0);
    *readings = st.int64(1);
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::int64_t batches = 0, readings = 0;
  {  // 25 readings, then the driver's end: batches of 10, 10 and 5.
    auto driver = std::make_shared<StepDriver>(25, -1);
    telemetry::Recorder recorder(driver, devices.add("acme", "rec-end", std::nullopt, admin),
                                 ingestor, 1000.0, 10);
    recorder.start();
    while (driver->given() < 25 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    recorder.stop();
    BOOST_TEST(recorder.batches() == 3);
    stored("rec-end", &batches, &readings);
    BOOST_TEST(batches == 3);
    BOOST_TEST(readings == 25);
  }
  {  // Stopped while reading the 16th: 16 read, all stored (10 and 6).
    auto driver = std::make_shared<StepDriver>(100, 15);
    telemetry::Recorder recorder(driver, devices.add("acme", "rec-stop", std::nullopt, admin),
                                 ingestor, 1000.0, 10);
    recorder.start();
    while (driver->given() < 15 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    BOOST_REQUIRE(driver->given() == 15);
    std::thread stopping([&] { recorder.stop(); });
    while (!recorder.stopping() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // stop() now waits on read()
    driver->go_on();
    stopping.join();
    BOOST_TEST(driver->given() == 16);
    BOOST_TEST(recorder.batches() == 2);
    stored("rec-stop", &batches, &readings);
    BOOST_TEST(batches == 2);
    BOOST_TEST(readings == 16);
  }
}
