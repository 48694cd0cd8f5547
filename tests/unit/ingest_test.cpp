// Telemetry ingestion without HTTP: batches that arrive while the ledger's writer is busy are
// stored by one command under one telemetry.batches event; a duplicate or a replay inside such a
// group is still told apart; a store that fails answers every batch of its group with the error.
#define BOOST_TEST_MODULE telemetry_ingest
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <set>

#include "ledger/ledger.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"
#include "telemetry/devices.hpp"
#include "telemetry/envelope.hpp"
#include "telemetry/ingest.hpp"

namespace json = boost::json;
using namespace kiln;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Fixture {
  test::TempDir dir;
  ledger::SqliteLedger ledger{dir.path() / "kiln.db"};
  telemetry::DeviceRegistry devices{ledger, ledger.path()};
  telemetry::Ingestor ingestor{ledger, devices, telemetry::IngestOptions{}};
  std::map<std::string, telemetry::KeyPair> keys;
  Fixture() { ledger.add_projector(&telemetry::project_devices); }

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
      s.t = now_s() - 10 + i;
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
  storage::Connection c(ledger.path(), storage::Connection::Mode::kReadOnly);
  auto count = c.prepare("SELECT count(*) FROM telemetry_batches");
  BOOST_REQUIRE(count.step());
  BOOST_TEST(count.int64(0) == 5);
  BOOST_TEST(ingestor.accepted_batches() == 5);
  BOOST_TEST(ledger.verify().ok);
}

BOOST_FIXTURE_TEST_CASE(a_store_that_fails_answers_every_batch_of_its_group, Fixture) {
  const std::string a = envelope("dev-a", 1), b = envelope("dev-b", 1);
  {
    storage::Connection c(ledger.path(), storage::Connection::Mode::kReadWrite);
    c.exec(
        "CREATE TRIGGER full_disk BEFORE INSERT ON telemetry_batches WHEN NEW.device = 'dev-b' "
        "BEGIN SELECT RAISE(ABORT, 'no space left'); END");
  }
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
  {
    storage::Connection c(ledger.path(), storage::Connection::Mode::kReadWrite);
    c.exec("DROP TRIGGER full_disk");
  }
  BOOST_TEST(ingestor.ingest("acme", "dev-a", a, now_s()).accepted);
  auto again = ingestor.ingest("acme", "dev-b", b, now_s());
  BOOST_TEST(again.accepted);
  BOOST_TEST(!again.duplicate);
  BOOST_TEST(ingestor.accepted_batches() == 2);
}
