// The sessionizer on a real roast (fixture, Bullet R1 state channel) and on BT alone, fed in
// batches of different sizes: exactly one session, opened at CHARGE and closed at DROP, and no
// second one from the cooling readings.
#define BOOST_TEST_MODULE sessions
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "analysis.hpp"
#include "artisan_detector.hpp"
#include "ledger/ledger.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"
#include "telemetry/ingest.hpp"
#include "telemetry/sessions.hpp"

using namespace kiln;
namespace bdata = boost::unit_test::data;

namespace {

roast::RoastLog fixture_log() {
  std::ifstream in(std::string(KILN_SOURCE_DIR) +
                   "/tests/fixtures/artisan-alog/26-04-12_sidamo_no42.alog");
  std::stringstream text;
  text << in.rdbuf();
  return roast::parse_alog(text.str());
}

std::vector<telemetry::Sample> fixture_roast(bool with_state) {
  const auto log = fixture_log();
  std::vector<telemetry::Sample> out;
  for (std::size_t i = 0; i < log.time.size(); ++i) {
    telemetry::Sample s;
    s.t = 1.8e9 + log.time[i];
    s.bt = log.bt[i];
    s.et = log.et[i];
    s.state = with_state ? static_cast<int>(log.roaster_state[i]) : 0;
    out.push_back(s);
  }
  return out;
}

// Hands `samples` to the sessionizer ten readings at a time, as one boot's batches arrive, and
// waits until they are handled.
void add_in_tens(telemetry::Sessionizer& s, const std::string& tenant, const std::string& device,
                 std::int64_t boot, const std::vector<telemetry::Sample>& samples) {
  for (std::size_t i = 0; i < samples.size(); i += 10)
    s.add(tenant, device, boot,
          std::vector<telemetry::Sample>(
              samples.begin() + static_cast<std::ptrdiff_t>(i),
              samples.begin() + static_cast<std::ptrdiff_t>(std::min(i + 10, samples.size()))));
  s.flush();
}

// A tenant's sessions, newest first.
std::vector<telemetry::SessionInfo> sessions_of(const std::filesystem::path& db,
                                                const std::string& tenant, std::int64_t limit) {
  telemetry::Sessionizer::ListFilter f;
  f.tenant = tenant;
  f.limit = limit;
  return telemetry::Sessionizer::list(db, f);
}

}  // namespace

// Not in the anonymous namespace: the data-driven test cases are templates with external
// linkage, and lambdas capturing an internal type there draw -Wsubobject-linkage.
namespace sessions_test {

struct Fixture {
  test::TempDir dir;
  ledger::SqliteLedger ledger{dir.path() / "kiln.db"};
  std::shared_ptr<nodes::EventDetector> detector = std::make_shared<roast::ArtisanDetector>();
  std::vector<telemetry::SessionInfo> closed;
  std::mutex mu;
  Fixture() { ledger.add_projector(&telemetry::project_sessions); }
  // A sessionizer on this ledger that records the sessions it closes in `closed`.
  // (It starts no reports left due: a callback that records none would be asked again.)
  std::unique_ptr<telemetry::Sessionizer> sessionizer(telemetry::SessionOptions o = {}) {
    o.report_retry_s = 0;
    return std::make_unique<telemetry::Sessionizer>(
        ledger, [this] { return detector; },
        [this](const telemetry::SessionInfo& i) -> std::optional<std::string> {
          std::lock_guard lock(mu);
          closed.push_back(i);
          return std::nullopt;  // no report mission
        },
        o);
  }
  // A roast closed by a sessionizer that started no report for it, as if the process stopped
  // there: the session's id.
  std::string closed_without_report() {
    auto s = sessionizer();
    add_in_tens(*s, "acme", "r1", 1, fixture_roast(true));
    BOOST_REQUIRE_EQUAL(closed.size(), 1u);
    return closed[0].id;
  }
};

// A report start that, the first time it is asked, has a roaster weigh the roast (431 g roasted)
// on another thread and waits 300 ms while that change goes as far as it may; it keeps every
// session it is handed and answers "m-1", "m-2", ...
struct WeighDuringFirstHandOn {
  std::mutex mu;
  std::vector<telemetry::SessionInfo> handed;
  std::thread change;
  std::atomic<bool> changing{false};  // `change` was started (on the sessionizer's thread)
  std::atomic<telemetry::Sessionizer*> self{nullptr};
  telemetry::Sessionizer::ClosedFn fn() {
    return [this](const telemetry::SessionInfo& s) -> std::optional<std::string> {
      std::size_t n = 0;
      {
        std::lock_guard lock(mu);
        handed.push_back(s);
        n = handed.size();
      }
      if (n == 1) {
        change = std::thread([this, tenant = s.tenant, id = s.id] {
          self.load()->weigh(tenant, id, std::nullopt, 431.0,
                             missions::Actor{"ana", missions::Role::kOperator});
        });
        changing = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      return "m-" + std::to_string(n);
    };
  }
  // Until the change, once started, has ended.
  void join() {
    for (int i = 0; i < 50 && !changing; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    BOOST_REQUIRE(changing.load());
    change.join();
  }
};

}  // namespace sessions_test
using sessions_test::Fixture;

BOOST_DATA_TEST_CASE(one_roast_is_one_session_whatever_the_batching,
                     bdata::make({1, 3, 10, 50}) * bdata::make({true, false}), batch, with_state) {
  Fixture f;
  auto samples = fixture_roast(with_state);
  {
    telemetry::Sessionizer s(
        f.ledger, [&] { return f.detector; },
        [&](const telemetry::SessionInfo& i) -> std::optional<std::string> {
          std::lock_guard lock(f.mu);
          f.closed.push_back(i);
          return std::nullopt;  // no report mission
        },
        telemetry::SessionOptions{.report_retry_s = 0});
    // Idle readings before the roast: the drum preheated, nothing happening.
    std::vector<telemetry::Sample> idle;
    for (int i = 120; i > 0; --i) {
      telemetry::Sample x = samples.front();
      x.t -= i;
      x.state = with_state ? 2 : 0;
      idle.push_back(x);
    }
    samples.insert(samples.begin(), idle.begin(), idle.end());
    for (std::size_t i = 0; i < samples.size(); i += static_cast<std::size_t>(batch)) {
      std::vector<telemetry::Sample> part(
          samples.begin() + static_cast<std::ptrdiff_t>(i),
          samples.begin() + static_cast<std::ptrdiff_t>(
                                std::min(i + static_cast<std::size_t>(batch), samples.size())));
      s.add("acme", "r1", 1, part);
      if (i % 7 == 0) s.flush();  // vary how batches coalesce
    }
    s.flush();
  }
  BOOST_REQUIRE_EQUAL(f.closed.size(), 1u);
  BOOST_TEST(f.closed[0].close_reason == "drop");
  auto all = sessions_of(f.ledger.path(), "acme", 10);
  for (const auto& x : all)
    BOOST_TEST_MESSAGE(x.id << " " << x.state << " charge " << x.charge_t - 1.8e9 << " end "
                            << (x.end_t ? *x.end_t - 1.8e9 : -1) << " " << x.close_reason);
  BOOST_REQUIRE_EQUAL(all.size(), 1u);
  BOOST_TEST(all[0].state == "closed");
  // CHARGE within 2 s of the roaster's (index 7 of the log, 120 idle readings before it).
  const double charge = 1.8e9 + 7.485;  // log.time[7]
  BOOST_TEST(std::abs(all[0].charge_t - charge) <= 3.0, all[0].charge_t - charge);
  // It knows its DROP, at or a little before its end where the DROP was seen (at it when the
  // DROP reading was handled alone, as batches of one may be): the DROP its report finds in its
  // readings (the detector over them), the roaster's own with a state channel. Its length runs
  // from CHARGE to that DROP.
  BOOST_REQUIRE(all[0].drop_t.has_value());
  BOOST_TEST(*all[0].drop_t <= *all[0].end_t);
  BOOST_TEST(*all[0].end_t - *all[0].drop_t < 60.0);
  nodes::RoastCurve curve;
  const double from = all[0].start_t, to = *all[0].end_t;
  for (const auto& x : samples) {
    if (x.t < from || x.t > to) continue;
    curve.time.push_back(x.t - all[0].start_t);
    curve.bt.push_back(x.bt);
    curve.et.push_back(x.et);
    if (with_state) curve.state.push_back(x.state);
  }
  const auto seen = f.detector->detect(curve);
  BOOST_REQUIRE(seen.drop >= 0);
  BOOST_TEST(*all[0].drop_t == all[0].start_t + curve.time[static_cast<std::size_t>(seen.drop)]);
  if (with_state) {
    const auto log = fixture_log();
    const double drop = 1.8e9 + log.time[static_cast<std::size_t>(log.timeindex[6])];
    BOOST_TEST(std::abs(*all[0].drop_t - drop) <= 2.0, *all[0].drop_t - drop);
  }
  BOOST_TEST(all[0].to_json().at("duration_s").as_double() ==
             std::round((*all[0].drop_t - all[0].charge_t) * 10) / 10);
}

// A roast whose session closed for silence (the link dropped mid-roast) and whose readings then
// resume where they stopped (a spool drained late): the same session opens again and closes at
// its DROP — no second session, and its report comes anew; the next roast, arriving as one
// backlog (longer than the idle window), opens its session at its own CHARGE.
BOOST_AUTO_TEST_CASE(a_roast_resumed_after_silence_opens_its_session_again) {
  Fixture f;
  {
    telemetry::SessionOptions o;
    o.silence_s = 0.2;
    o.report_retry_s = 0;
    telemetry::Sessionizer s(
        f.ledger, [&] { return f.detector; },
        [&](const telemetry::SessionInfo& i) -> std::optional<std::string> {
          std::lock_guard lock(f.mu);
          f.closed.push_back(i);
          return std::nullopt;  // no report mission
        },
        o);
    auto samples = fixture_roast(true);
    const auto half = samples.begin() + 250;  // well after CHARGE (index 7), before DROP
    s.add("acme", "r1", 1, std::vector<telemetry::Sample>(samples.begin(), half));
    s.flush();
    // The sweep runs at least once a second: wait past the silence.
    for (int i = 0; i < 40; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard lock(f.mu);
      if (!f.closed.empty()) break;
    }
    {
      std::lock_guard lock(f.mu);
      BOOST_REQUIRE_EQUAL(f.closed.size(), 1u);
      BOOST_TEST(f.closed[0].close_reason == "silence");
    }
    s.add("acme", "r1", 1, std::vector<telemetry::Sample>(half, samples.end()));
    s.flush();
    // The next roast on the same device, 20 minutes on, opens its session at its own CHARGE.
    auto next = fixture_roast(true);
    for (auto& x : next) x.t += 1200;
    add_in_tens(s, "acme", "r1", 1, next);
  }
  auto all = sessions_of(f.ledger.path(), "acme", 10);
  for (const auto& x : all)
    BOOST_TEST_MESSAGE(x.id << " " << x.state << " charge " << x.charge_t - 1.8e9);
  BOOST_REQUIRE_EQUAL(all.size(), 2u);  // newest first: the second roast, then the first
  BOOST_TEST(std::abs(all[0].charge_t - (1.8e9 + 1200 + 7.485)) <= 3.0);
  BOOST_TEST(all[0].close_reason == "drop");
  BOOST_TEST(all[0].reopens == 0);
  BOOST_TEST(std::abs(all[1].charge_t - (1.8e9 + 7.485)) <= 3.0);
  // The first roast's session closed for silence, opened again, and closed at its DROP.
  BOOST_TEST(all[1].close_reason == "drop");
  BOOST_TEST(all[1].reopens == 1);
  BOOST_REQUIRE(all[1].drop_t.has_value());
  const auto log = fixture_log();
  BOOST_TEST(std::abs(*all[1].drop_t -
                      (1.8e9 + log.time[static_cast<std::size_t>(log.timeindex[6])])) <= 2.0);
  std::lock_guard lock(f.mu);
  BOOST_REQUIRE_EQUAL(f.closed.size(), 3u);  // silence, then DROP, then the next roast's DROP
  BOOST_TEST(f.closed[1].id == f.closed[0].id);
  BOOST_TEST(f.closed[1].reopens == 1);
  // Its ledger history: opened, closed, opened again, closed.
  std::vector<std::string> kinds;
  ledger::ExportFilter filter;
  filter.stream = "sessions";
  f.ledger.for_each(filter, [&](const ledger::Event& e) {
    if (e.payload.find(f.closed[0].id) != std::string::npos) kinds.push_back(e.kind);
  });
  const std::vector<std::string> expected = {"session.opened", "session.closed", "session.reopened",
                                             "session.closed"};
  BOOST_TEST(kinds == expected, boost::test_tools::per_element());
}

// Readings that resume long after a silence (more than resume_gap_s of device time after the
// session's last one: the device itself stopped) are no continuation: it stays closed.
BOOST_AUTO_TEST_CASE(readings_long_after_a_silence_do_not_reopen_the_session) {
  Fixture f;
  telemetry::SessionOptions o;
  o.silence_s = 0.2;
  {
    auto s = f.sessionizer(o);
    auto samples = fixture_roast(true);
    const auto half = samples.begin() + 250;
    s->add("acme", "r1", 1, std::vector<telemetry::Sample>(samples.begin(), half));
    s->flush();
    for (int i = 0; i < 40; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard lock(f.mu);
      if (!f.closed.empty()) break;
    }
    std::vector<telemetry::Sample> later(half, samples.end());
    for (auto& x : later) x.t += 60;  // a minute of device time missing: beyond resume_gap_s
    add_in_tens(*s, "acme", "r1", 1, later);
  }
  auto all = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(all.size(), 1u);
  BOOST_TEST(all[0].close_reason == "silence");
  BOOST_TEST(all[0].reopens == 0);
}

// A device that boots again mid-roast with its clock started over (the same times again): the
// open session closes as "reboot" with the old boot, and the new boot's roast — at times the old
// one had already shown — opens its own session, which holds only the new boot.
BOOST_AUTO_TEST_CASE(a_reboot_whose_clock_starts_over_is_a_new_timeline) {
  Fixture f;
  {
    auto s = f.sessionizer();
    auto samples = fixture_roast(true);
    const auto half = samples.begin() + 250;  // well after CHARGE (index 7), before DROP
    add_in_tens(*s, "acme", "r1", 7, std::vector<telemetry::Sample>(samples.begin(), half));
    // Boot 8 starts the clock 100 s earlier than boot 7 did, and roasts again.
    auto again = fixture_roast(true);
    for (auto& x : again) x.t -= 100;
    add_in_tens(*s, "acme", "r1", 8, again);
    // A late batch of boot 7 changes nothing.
    add_in_tens(*s, "acme", "r1", 7, std::vector<telemetry::Sample>(half, half + 10));
  }
  BOOST_REQUIRE_EQUAL(f.closed.size(), 2u);
  BOOST_TEST(f.closed[0].close_reason == "reboot");
  BOOST_TEST(f.closed[0].first_boot.value_or(-1) == 7);
  BOOST_TEST(f.closed[0].last_boot.value_or(-1) == 7);
  BOOST_TEST(f.closed[1].close_reason == "drop");
  BOOST_TEST(f.closed[1].first_boot.value_or(-1) == 8);
  BOOST_TEST(f.closed[1].last_boot.value_or(-1) == 8);
  BOOST_TEST(std::abs(f.closed[1].charge_t - (1.8e9 - 100 + 7.485)) <= 3.0);
  // The projection has the boots too (as the ledger events say).
  auto all = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(all.size(), 2u);
  for (const auto& x : all) {
    BOOST_TEST(x.state == "closed");
    BOOST_TEST(x.first_boot.has_value());
    BOOST_TEST(x.last_boot.value_or(-1) == x.first_boot.value_or(-2));
  }
}

// A device's newest session — what predict and sessions mark --device take — is its newest
// recording's, open or closed, though a clock that started over put it at earlier times; the
// next page goes on to the older recording.
BOOST_AUTO_TEST_CASE(a_devices_newest_session_is_its_newest_recordings) {
  Fixture f;
  {
    auto s = f.sessionizer();
    add_in_tens(*s, "acme", "r1", 7, fixture_roast(true));  // closed at DROP
    auto again = fixture_roast(true);
    for (auto& x : again) x.t -= 100;  // boot 8's clock starts 100 s earlier, and it roasts
    add_in_tens(*s, "acme", "r1", 8,
                std::vector<telemetry::Sample>(again.begin(), again.begin() + 250));
  }
  telemetry::Sessionizer::ListFilter newest;
  newest.tenant = "acme";
  newest.device = "r1";
  newest.limit = 1;
  const auto first = telemetry::Sessionizer::list(f.ledger.path(), newest);
  BOOST_REQUIRE_EQUAL(first.size(), 1u);
  BOOST_TEST(first[0].state == "open");
  BOOST_TEST(first[0].first_boot.value_or(-1) == 8);
  newest.starting_after = first[0].id;
  const auto next = telemetry::Sessionizer::list(f.ledger.path(), newest);
  BOOST_REQUIRE_EQUAL(next.size(), 1u);
  BOOST_TEST(next[0].state == "closed");
  BOOST_TEST(next[0].first_boot.value_or(-1) == 7);
}

// Session ids are unique across tenants whatever their names: device "r1-1" at second
// 1800000007 in tenant "acme" and device "r1" at second 1 in tenant "1800000007-acme" once made
// the same id (the second's session was then lost to a UNIQUE constraint).
BOOST_AUTO_TEST_CASE(session_ids_never_collide_across_tenants) {
  Fixture f;
  {
    auto s = f.sessionizer();
    auto feed = [&](const std::string& tenant, const std::string& device, double shift) {
      auto samples = fixture_roast(true);
      for (auto& x : samples) x.t += shift;
      add_in_tens(*s, tenant, device, 1, samples);
    };
    feed("acme", "r1-1", 0);                    // CHARGE at 1800000007.5
    feed("1800000007-acme", "r1", -1.8e9 - 6);  // CHARGE at 1.5
  }
  auto a = sessions_of(f.ledger.path(), "acme", 10);
  auto b = sessions_of(f.ledger.path(), "1800000007-acme", 10);
  BOOST_REQUIRE_EQUAL(a.size(), 1u);
  BOOST_REQUIRE_EQUAL(b.size(), 1u);
  BOOST_TEST(a[0].id != b[0].id);
  BOOST_TEST(a[0].id == "s-r1-1-1800000007@acme");
  BOOST_TEST(b[0].id == "s-r1-1@1800000007-acme");
}

// Pages of sessions join up without a gap or a repeat, sessions that started in the same second
// on several roasters included (a cursor on the start alone skipped the rest of them).
BOOST_AUTO_TEST_CASE(pages_of_sessions_join_up_across_equal_starts) {
  Fixture f;
  {
    auto s = f.sessionizer();
    for (const std::string device : {"r1-a", "r1-b", "r1-c"})
      add_in_tens(*s, "acme", device, 1, fixture_roast(true));
    auto older = fixture_roast(true);
    for (auto& x : older) x.t -= 3600;
    add_in_tens(*s, "acme", "r1-d", 1, older);
    add_in_tens(*s, "globex", "r1-g", 1, fixture_roast(true));
  }
  const auto all = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(all.size(), 4u);
  BOOST_TEST(all[0].start_t == all[2].start_t);  // three at once, then the older one
  BOOST_TEST(all[3].device == "r1-d");
  std::vector<std::string> paged;
  telemetry::Sessionizer::ListFilter page;
  page.tenant = "acme";
  page.limit = 2;
  for (int i = 0; i < 4; ++i) {
    const auto got = telemetry::Sessionizer::list(f.ledger.path(), page);
    for (const auto& x : got) paged.push_back(x.id);
    if (got.empty()) break;
    page.starting_after = got.back().id;
  }
  std::vector<std::string> ids;
  for (const auto& x : all) ids.push_back(x.id);
  BOOST_TEST(paged == ids, boost::test_tools::per_element());
  // A cursor that is no session of the tenant is refused, naming the parameter.
  for (const std::string& cursor :
       {std::string("s-nope"), sessions_of(f.ledger.path(), "globex", 1)[0].id}) {
    page.starting_after = cursor;
    try {
      telemetry::Sessionizer::list(f.ledger.path(), page);
      BOOST_FAIL("a cursor that is no session of acme was taken: " + cursor);
    } catch (const missions::MissionError& e) {
      BOOST_TEST(e.field() == "starting_after");
      BOOST_TEST(std::string(e.what()).find("no session '" + cursor + "' to start after") == 0u,
                 e.what());
    }
  }
}

// The clock starts over at exactly the same second (a simulated roaster run again within the
// second its last run began): the new boot's CHARGE falls on the same second as the old one's,
// and its session gets an id of its own (naming its boot) instead of reopening the old row.
BOOST_AUTO_TEST_CASE(a_charge_at_the_same_second_on_a_new_boot_is_another_session) {
  Fixture f;
  {
    auto s = f.sessionizer();
    const auto samples = fixture_roast(true);
    // A partial roast, then the whole roast again at the same device times.
    add_in_tens(*s, "acme", "r1", 7,
                std::vector<telemetry::Sample>(samples.begin(), samples.begin() + 250));
    add_in_tens(*s, "acme", "r1", 8, samples);
  }
  BOOST_REQUIRE_EQUAL(f.closed.size(), 2u);
  BOOST_TEST(f.closed[0].close_reason == "reboot");
  BOOST_TEST(f.closed[1].close_reason == "drop");
  BOOST_TEST(f.closed[0].id != f.closed[1].id);
  BOOST_TEST(f.closed[1].id == "s-r1-1800000007~b8@acme");
  auto all = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(all.size(), 2u);
  for (const auto& x : all) BOOST_TEST(x.last_boot.value_or(-1) == x.first_boot.value_or(-2));
}

// A partial recording (stopped 40 s after CHARGE), then, a minute later on the device's clock, a
// new recording of a whole roast: the first session ends where its readings stopped, and the new
// roast gets its own session, closed at its own DROP. The new boot's first readings once
// continued the open session and read as its DROP (a 41 s roast, QC failed), and the whole roast
// after it had no session.
BOOST_DATA_TEST_CASE(a_new_recording_after_a_gap_is_a_new_roast, bdata::make({true, false}),
                     with_state) {
  Fixture f;
  const auto samples = fixture_roast(with_state);
  const std::size_t charge = 7, stop = charge + 40;  // about 1 s a reading
  std::vector<telemetry::Sample> partial(samples.begin(),
                                         samples.begin() + static_cast<std::ptrdiff_t>(stop));
  auto whole = fixture_roast(with_state);
  const double shift = partial.back().t + 51 - whole.front().t;
  for (auto& x : whole) x.t += shift;
  {
    auto s = f.sessionizer();
    add_in_tens(*s, "acme", "r1", 7, partial);
    add_in_tens(*s, "acme", "r1", 8, whole);
  }
  auto all = sessions_of(f.ledger.path(), "acme", 10);
  for (const auto& x : all)
    BOOST_TEST_MESSAGE(x.id << " " << x.state << " charge " << x.charge_t - 1.8e9 << " reason "
                            << x.close_reason << " boots " << x.first_boot.value_or(-1) << "-"
                            << x.last_boot.value_or(-1));
  // With the roaster's state the partial roast had a session from its CHARGE: it ends for
  // silence at its last reading. From BT alone it never reached TP, so it had none.
  BOOST_REQUIRE_EQUAL(f.closed.size(), with_state ? 2u : 1u);
  if (with_state) {
    BOOST_TEST(f.closed[0].close_reason == "silence");
    BOOST_TEST(f.closed[0].last_boot.value_or(-1) == 7);
    BOOST_TEST(*f.closed[0].end_t == partial.back().t);
  }
  const auto& roast = f.closed.back();
  BOOST_TEST(roast.close_reason == "drop");
  BOOST_TEST(roast.first_boot.value_or(-1) == 8);
  BOOST_TEST(std::abs(roast.charge_t - whole[charge].t) <= 3.0, roast.charge_t - whole[charge].t);
  BOOST_REQUIRE(roast.drop_t.has_value());
  BOOST_TEST(*roast.drop_t - roast.charge_t > 300);
}

// A recorder restarted mid-roast whose roaster starts over (the simulated roaster does, as the
// in-server recorder restarts with the server): the readings go on a second later with the
// roaster waiting for a charge (state 4), then a whole roast. The cut roast ends at the first
// "DROP" (leaving the roasting state); the whole roast after it has its own session. Its
// charge-wait readings were once the first session's tail, and the whole roast had none.
BOOST_AUTO_TEST_CASE(a_roast_that_starts_over_right_after_a_cut_one_has_its_session) {
  Fixture f;
  const auto samples = fixture_roast(true);
  const std::size_t charge = 7, stop = charge + 40;
  BOOST_REQUIRE(samples[0].state == 4);  // the fixture waits for its charge first
  std::vector<telemetry::Sample> partial(samples.begin(),
                                         samples.begin() + static_cast<std::ptrdiff_t>(stop));
  auto whole = fixture_roast(true);
  const double shift = partial.back().t + 1 - whole.front().t;
  for (auto& x : whole) x.t += shift;
  {
    // (The cut roast "drops" 40 s after CHARGE: handed on only without a minimum length.)
    auto s = f.sessionizer(telemetry::SessionOptions{.min_length_s = 0});
    add_in_tens(*s, "acme", "r1", 7, partial);
    add_in_tens(*s, "acme", "r1", 8, whole);
  }
  BOOST_REQUIRE_EQUAL(f.closed.size(), 2u);
  BOOST_TEST(f.closed[0].close_reason == "drop");
  BOOST_TEST(*f.closed[0].end_t < whole[charge].t);
  const auto& roast = f.closed.back();
  BOOST_TEST(roast.close_reason == "drop");
  BOOST_TEST(std::abs(roast.charge_t - whole[charge].t) <= 3.0, roast.charge_t - whole[charge].t);
  BOOST_REQUIRE(roast.drop_t.has_value());
  BOOST_TEST(*roast.drop_t - roast.charge_t > 300);
}

// A roaster marks first crack (heard, not seen) on a closed session: the mark is a ledger event,
// the session shows it, and the session is handed on again (its report made anew with it); a
// mark that cannot be right is refused saying why and what to do.
BOOST_AUTO_TEST_CASE(a_roaster_marks_first_crack_on_a_closed_session) {
  using Code = missions::MissionError::Code;
  Fixture f;
  auto s = f.sessionizer();
  add_in_tens(*s, "acme", "r1", 1, fixture_roast(true));
  BOOST_REQUIRE_EQUAL(f.closed.size(), 1u);
  const auto closed = f.closed[0];
  BOOST_REQUIRE(closed.marks.empty());
  BOOST_REQUIRE(closed.drop_t.has_value());
  const missions::Actor roaster{"ana", missions::Role::kOperator};
  const auto log = fixture_log();
  const double fcs = 1.8e9 + log.time[static_cast<std::size_t>(log.timeindex[2])];

  telemetry::Mark m;
  m.event = "fcs";  // as typed
  m.after_charge = fcs - closed.charge_t;
  const auto after = s->mark("acme", closed.id, m, roaster);
  BOOST_REQUIRE_EQUAL(after.marks.size(), 1u);
  BOOST_TEST(std::abs(after.marks.at("FCs") - fcs) < 1e-6);
  const auto stored = telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), closed.id);
  BOOST_REQUIRE(stored);
  BOOST_TEST(std::abs(stored->marks.at("FCs") - fcs) < 1e-6);
  BOOST_TEST(std::abs(stored->to_json().at("marks").at("FCs").as_double() - fcs) < 1e-6);
  {
    std::lock_guard lock(f.mu);
    BOOST_REQUIRE_EQUAL(f.closed.size(), 2u);  // handed on again, with the mark
    BOOST_TEST(f.closed[1].id == closed.id);
    BOOST_TEST(f.closed[1].marks.count("FCs") == 1u);
  }
  // Without a report: recorded, not handed on.
  m.after_charge = *m.after_charge + 1;
  s->mark("acme", closed.id, m, roaster, false);
  BOOST_TEST(f.closed.size() == 2u);

  auto refused = [&](telemetry::Mark mark, Code code, const std::string& says, missions::Actor by) {
    try {
      s->mark("acme", closed.id, mark, by);
      BOOST_ERROR("marked " << mark.event << ", expected: " << says);
    } catch (const missions::MissionError& e) {
      BOOST_TEST((e.code() == code), e.what());
      BOOST_TEST(std::string(e.what()).find(says) != std::string::npos, e.what());
    }
  };
  telemetry::Mark bad = m;
  refused(bad, Code::kForbidden, "operator role", missions::Actor{"v", missions::Role::kViewer});
  bad.event = "SCs";
  refused(bad, Code::kInvalidInput, "one of CHARGE, DRY_END, FCs, DROP (second crack is not",
          roaster);
  bad.event = "fc";
  refused(bad, Code::kInvalidInput, "(first crack: FCs)", roaster);
  bad.event = "FCs";
  BOOST_REQUIRE(*closed.end_t > *closed.drop_t);
  // After the DROP it closed at, before its last reading.
  bad.after_charge = (*closed.drop_t + *closed.end_t) / 2 - closed.charge_t;
  refused(bad, Code::kInvalidInput, "is not before DROP (detected at ", roaster);
  bad.event = "DRY_END";
  bad.after_charge = *m.after_charge + 10;  // after the FCs marked
  refused(bad, Code::kInvalidInput, "is not before FCs (marked at ", roaster);
  bad.after_charge = 3600;  // long after the session ended
  refused(bad, Code::kInvalidInput, "is outside session", roaster);
  bad.after_charge.reset();  // now: the session closed long ago
  refused(bad, Code::kInvalidInput, "--at M:SS", roaster);
  telemetry::Mark elsewhere = m;
  try {
    s->mark("other", closed.id, elsewhere, roaster);
    BOOST_ERROR("marked another tenant's session");
  } catch (const missions::MissionError& e) {
    BOOST_TEST((e.code() == Code::kNotFound), e.what());
  }
  BOOST_CHECK_THROW(telemetry::Mark::from_json(boost::json::object{
                        {"event", "FCs"}, {"clear", true}, {"after_charge", 400}}),
                    missions::MissionError);

  // Cleared: gone, handed on again; clearing it twice is refused, naming what is marked.
  telemetry::Mark clear;
  clear.event = "FCs";
  clear.clear = true;
  BOOST_TEST(s->mark("acme", closed.id, clear, roaster).marks.empty());
  BOOST_TEST(f.closed.size() == 3u);
  refused(clear, Code::kInvalidState, "has no FCs mark to clear (it has no marks)", roaster);
  BOOST_TEST(f.closed.size() == 3u);
  BOOST_TEST(
      telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), closed.id)->marks.empty());
  // Each change is in the ledger: marked, marked, cleared (the refusals and the second clear
  // left nothing).
  std::vector<std::string> marked;
  ledger::ExportFilter filter;
  filter.stream = "sessions";
  f.ledger.for_each(filter, [&](const ledger::Event& e) {
    if (e.kind == "session.marked") marked.push_back(e.payload);
  });
  BOOST_REQUIRE_EQUAL(marked.size(), 3u);
  BOOST_TEST(marked[2].find("\"t\":null") != std::string::npos, marked[2]);
  BOOST_TEST(marked[0].find("\"ana\"") != std::string::npos, marked[0]);
}

// A mark during the roast (no time: now) lands on the open session, and the session it closes
// carries it to its report.
BOOST_AUTO_TEST_CASE(a_live_mark_reaches_the_closing_session) {
  Fixture f;
  auto s = f.sessionizer(telemetry::SessionOptions{.live_mark_quiet_s = 1.0});
  // The roast as if under way now: its readings end at this second.
  auto samples = fixture_roast(true);
  const auto log = fixture_log();
  const std::size_t fcs = static_cast<std::size_t>(log.timeindex[2]);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double shift = now - samples[fcs].t;
  for (auto& x : samples) x.t += shift;
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(
                  samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(fcs - 1)));
  s->add("acme", "r1", 1, {samples[fcs - 1]});  // a batch of one reading: it covers 0 s
  s->flush();
  auto open = sessions_of(f.ledger.path(), "acme", 1);
  BOOST_REQUIRE_EQUAL(open.size(), 1u);
  BOOST_REQUIRE(open[0].state == "open");
  telemetry::Mark m;
  m.event = "FCs";
  const auto marked =
      s->mark("acme", open[0].id, m, missions::Actor{"ana", missions::Role::kOperator});
  BOOST_TEST(std::abs(marked.marks.at("FCs") - now) < 5);
  BOOST_TEST(f.closed.empty());  // open: nothing handed on yet
  // Once the readings stop coming (live_mark_quiet_s), a mark at now would lie past them: it
  // needs its time (one was taken, then moved to the last reading by the report).
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  try {
    s->mark("acme", open[0].id, m, missions::Actor{"ana", missions::Role::kOperator});
    BOOST_FAIL("a mark at now after the readings stopped was taken");
  } catch (const missions::MissionError& e) {
    const std::string what = e.what();
    BOOST_TEST(std::regex_search(what, std::regex("no readings of session " + open[0].id +
                                                  " have arrived for [0-9]+ s")),
               what);
    BOOST_TEST(what.find("--at M:SS") != std::string::npos, what);
    BOOST_TEST(e.field() == "after_charge");
  }
  // A recorder whose batches cover more time is not quiet as soon: after a batch of 10 s, the
  // same wait is within twice that.
  s->add("acme", "r1", 1,
         std::vector<telemetry::Sample>(samples.begin() + static_cast<std::ptrdiff_t>(fcs),
                                        samples.begin() + static_cast<std::ptrdiff_t>(fcs + 11)));
  s->flush();
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  BOOST_CHECK_NO_THROW(
      s->mark("acme", open[0].id, m, missions::Actor{"ana", missions::Role::kOperator}));
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(
                  samples.begin() + static_cast<std::ptrdiff_t>(fcs + 11), samples.end()));
  std::lock_guard lock(f.mu);
  BOOST_REQUIRE_EQUAL(f.closed.size(), 1u);
  BOOST_TEST(f.closed[0].marks.count("FCs") == 1u);
}

// The batch's weights: green when charged, roasted once cooled (later); each a ledger event, the
// session shows them and their loss, a closed session is handed on again; what cannot be a
// batch's weight is refused naming the field.
BOOST_AUTO_TEST_CASE(a_roaster_weighs_the_batch_green_then_roasted) {
  using Code = missions::MissionError::Code;
  Fixture f;
  auto s = f.sessionizer();
  add_in_tens(*s, "acme", "r1", 1, fixture_roast(true));
  BOOST_REQUIRE_EQUAL(f.closed.size(), 1u);
  const auto id = f.closed[0].id;
  const missions::Actor roaster{"ana", missions::Role::kOperator};
  auto after = s->weigh("acme", id, 500.0, std::nullopt, roaster);
  BOOST_TEST(*after.green_g == 500.0);
  BOOST_TEST(!after.roasted_g);
  BOOST_TEST(after.to_json().at("weight").at("loss_percent").is_null());
  after = s->weigh("acme", id, std::nullopt, 431.0, roaster);
  BOOST_TEST(*after.green_g == 500.0);  // kept
  BOOST_TEST(*after.roasted_g == 431.0);
  const auto stored = telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), id);
  BOOST_TEST(stored->to_json().at("weight").at("loss_percent").as_double() == 13.8);
  {
    std::lock_guard lock(f.mu);
    BOOST_REQUIRE_EQUAL(f.closed.size(), 3u);  // handed on after each weight
    BOOST_TEST(*f.closed[2].roasted_g == 431.0);
  }
  s->weigh("acme", id, 500.0, 431.0, roaster);  // the same again: nothing recorded
  BOOST_TEST(f.closed.size() == 3u);
  auto refused = [&](std::optional<double> green, std::optional<double> roasted,
                     const std::string& field, const std::string& says) {
    try {
      s->weigh("acme", id, green, roasted, roaster);
      BOOST_ERROR("weighed, expected: " << says);
    } catch (const missions::MissionError& e) {
      BOOST_TEST((e.code() == Code::kInvalidInput), e.what());
      BOOST_TEST(e.field() == field);
      BOOST_TEST(std::string(e.what()).find(says) != std::string::npos, e.what());
    }
  };
  refused(std::nullopt, std::nullopt, "green_g", "give a weight");
  refused(0.0, std::nullopt, "green_g", "from 10 g to 100000 g");
  refused(0.5, std::nullopt, "green_g", "weights are in grams (500 for half a kilo)");
  refused(std::nullopt, 250000.0, "roasted_g", "from 10 g to 100000 g");
  refused(std::nullopt, 200.0, "roasted_g", "200.0 g roasted from 500.0 g green is a loss of 60 %");
  refused(std::nullopt, 520.0, "roasted_g", "520.0 g roasted is not below 500.0 g green");
  refused(400.0, std::nullopt, "green_g", "431.0 g roasted is not below 400.0 g green");
  BOOST_CHECK_THROW(
      s->weigh("acme", id, 510.0, std::nullopt, missions::Actor{"v", missions::Role::kViewer}),
      missions::MissionError);
  std::size_t weighed = 0;
  ledger::ExportFilter filter;
  filter.stream = "sessions";
  f.ledger.for_each(filter,
                    [&](const ledger::Event& e) { weighed += e.kind == "session.weighed"; });
  BOOST_TEST(weighed == 2u);
}

// A report is due from a session's close (or a roaster's change asking for it) until a mission
// is recorded for it. A process that stopped in between — or a start that failed — leaves it
// due, and the next sessionizer on the database hands the session on again; one a roaster
// changed without asking for a report (report: false) is not handed on.
BOOST_AUTO_TEST_CASE(a_report_the_process_stopped_before_starting_is_started_later) {
  Fixture f;
  const std::string id = f.closed_without_report();
  auto due = [&] {
    storage::Connection c(f.ledger.path(), storage::Connection::Mode::kReadOnly);
    auto st = c.prepare("SELECT report_due FROM telemetry_sessions WHERE id = ?");
    st.bind(1, id);
    BOOST_REQUIRE(st.step());
    return !st.is_null(0);
  };
  BOOST_TEST(due());
  // The next process: its sessionizer looks for due reports (here every 0.3 s, among those due
  // for 0.3 s) and hands the session on; the mission it gets is recorded, and nothing is due.
  std::mutex mu;
  std::vector<std::string> handed;
  telemetry::SessionOptions o;
  o.report_retry_s = 0.3;
  auto started = [&](const telemetry::SessionInfo& s) -> std::optional<std::string> {
    std::lock_guard lock(mu);
    handed.push_back(s.id);
    return "m-" + std::to_string(handed.size());
  };
  // Until the n-th hand-on's mission is recorded (it is, just after the hand-on returns).
  auto wait_for = [&](std::size_t n) {
    for (int i = 0; i < 50; ++i) {
      {
        std::lock_guard lock(mu);
        if (handed.size() >= n && !due()) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  };
  const missions::Actor roaster{"ana", missions::Role::kOperator};
  {
    telemetry::Sessionizer s(
        f.ledger, [&] { return f.detector; }, started, o);
    wait_for(1);
    {
      std::lock_guard lock(mu);
      BOOST_REQUIRE_EQUAL(handed.size(), 1u);
      BOOST_TEST(handed[0] == id);
    }
    BOOST_TEST(!due());
    BOOST_TEST(telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), id)
                   ->mission_id.value_or("") == "m-1");
    // Weighed without a report: nothing due, nothing handed on.
    s.weigh("acme", id, 500.0, std::nullopt, roaster, false);
    BOOST_TEST(!due());
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
    std::lock_guard lock(mu);
    BOOST_TEST(handed.size() == 1u);
  }
  // Weighed asking for a report, by a process that stops before the mission is recorded (its
  // hand-on starts none): due again, and the next process starts it.
  {
    auto s = f.sessionizer();
    s->weigh("acme", id, std::nullopt, 431.0, roaster);
  }
  BOOST_TEST(due());
  {
    telemetry::Sessionizer s(
        f.ledger, [&] { return f.detector; }, started, o);
    wait_for(2);
  }
  std::lock_guard lock(mu);
  BOOST_REQUIRE_EQUAL(handed.size(), 2u);
  BOOST_TEST(!due());
  // A pass that read the session due since an earlier time records nothing over a report
  // started since (a roaster's change, in this process or another).
  auto later = f.sessionizer();
  const auto now = telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), id);
  BOOST_TEST(!later->set_mission(*now, "m-stale", std::string("2027-01-01T00:00:00.000Z")));
  BOOST_TEST(telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), id)
                 ->mission_id.value_or("") == "m-2");
}

// A roaster's state flickering to "roasting" for 14 s is no roast: the session it opens closes at
// its DROP and starts no report (sessions.min_length_s), so no approver is asked about it; with
// the minimum at 0 the same readings are handed on.
BOOST_AUTO_TEST_CASE(a_session_shorter_than_the_minimum_starts_no_report) {
  std::vector<telemetry::Sample> glitch;
  const double t0 = 1800000000;
  for (int i = 0; i < 200; ++i) {
    telemetry::Sample x;
    x.t = t0 + i;
    x.state = i < 120 ? 2 : i < 134 ? 6 : 8;  // preheat, 14 s "roasting", cooling
    x.bt = i < 134 ? 200 : 200 - (i - 134);
    x.et = 220;
    glitch.push_back(x);
  }
  for (double minimum : {60.0, 0.0}) {
    Fixture f;
    {
      auto s = f.sessionizer(telemetry::SessionOptions{.min_length_s = minimum});
      add_in_tens(*s, "acme", "r1", 1, glitch);
    }
    const auto sessions = sessions_of(f.ledger.path(), "acme", 10);
    BOOST_REQUIRE_EQUAL(sessions.size(), 1u);
    BOOST_TEST(sessions[0].state == "closed");
    BOOST_TEST(sessions[0].close_reason == "drop");
    std::lock_guard lock(f.mu);
    BOOST_TEST(f.closed.size() == (minimum > 0 ? 0u : 1u), minimum);
    storage::Connection c(f.ledger.path(), storage::Connection::Mode::kReadOnly);
    auto st = c.prepare("SELECT report_due IS NULL FROM telemetry_sessions WHERE id = ?");
    st.bind(1, sessions[0].id);
    BOOST_REQUIRE(st.step());
    BOOST_TEST(st.int64(0) == (minimum > 0 ? 1 : 0), minimum);  // nothing due, to start later
  }
}

// A node whose CHARGE is no reading of the curve (a broken plugin's, past its gate with
// gates.enforce: warn) fails the device's round instead of the sessionizer reading there.
BOOST_AUTO_TEST_CASE(a_detectors_event_outside_the_curve_opens_no_session) {
  struct Outside final : nodes::EventDetector {
    nodes::RoastEvents detect(const nodes::RoastCurve& c) const override {
      ++calls;
      nodes::RoastEvents e;
      e.charge = static_cast<int>(c.time.size()) + (1 << 28);
      e.charge_source = "roaster state";
      return e;
    }
    mutable std::atomic<int> calls{0};
  };
  Fixture f;
  auto outside = std::make_shared<Outside>();
  f.detector = outside;
  auto s = f.sessionizer();
  add_in_tens(*s, "acme", "r1", 1, fixture_roast(true));
  s->flush();
  BOOST_TEST(outside->calls.load() > 0);  // asked, and its answer refused
  BOOST_TEST(sessions_of(f.ledger.path(), "acme", 10).empty());
  BOOST_TEST(f.closed.empty());
}

// A node that breaks once a session is open (every answer refused) still lets the session close
// at sessions.max_length_s: the round's failure used to skip that check, and the session stayed
// open, holding every reading the device sent.
BOOST_AUTO_TEST_CASE(a_session_whose_detector_breaks_still_closes_at_its_maximum_length) {
  struct Breaking final : nodes::EventDetector {
    std::atomic<bool> broken{false};
    nodes::RoastEvents detect(const nodes::RoastCurve& c) const override {
      auto e = roast::ArtisanDetector().detect(c);
      if (broken) e.drop = static_cast<int>(c.time.size()) + 5;
      return e;
    }
  };
  Fixture f;
  auto breaking = std::make_shared<Breaking>();
  f.detector = breaking;
  auto s = f.sessionizer(telemetry::SessionOptions{.max_length_s = 200});
  const auto roast = fixture_roast(true);
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(roast.begin(), roast.begin() + 60));
  BOOST_REQUIRE_EQUAL(sessions_of(f.ledger.path(), "acme", 10).size(), 1u);
  breaking->broken = true;
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(roast.begin() + 60, roast.begin() + 400));
  const auto after = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(after.size(), 1u);
  BOOST_TEST(after[0].state == "closed");
  BOOST_TEST(after[0].close_reason == "max_length");
}

// A roast whose DROP the detector never finds (a probe lost near the end) closes at
// sessions.max_length_s after CHARGE, at its last reading, with its readings kept.
BOOST_AUTO_TEST_CASE(a_roast_without_a_drop_closes_at_its_maximum_length) {
  struct NoDrop final : nodes::EventDetector {
    nodes::RoastEvents detect(const nodes::RoastCurve& c) const override {
      auto e = roast::ArtisanDetector().detect(c);
      e.drop = -1;
      return e;
    }
  };
  Fixture f;
  f.detector = std::make_shared<NoDrop>();
  auto s = f.sessionizer(telemetry::SessionOptions{.max_length_s = 200});
  const auto roast = fixture_roast(true);
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(roast.begin(), roast.begin() + 400));
  const auto after = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(after.size(), 1u);
  BOOST_TEST(after[0].state == "closed");
  BOOST_TEST(after[0].close_reason == "max_length");
  BOOST_REQUIRE(after[0].end_t.has_value());
  BOOST_TEST(*after[0].end_t > after[0].charge_t + 200);
  BOOST_TEST(*after[0].end_t <= roast[399].t);
  BOOST_TEST(f.closed.size() == 1u);
}

// With no event_detector node running, readings are stored but open no session; once one runs
// (the roast plugin enabled), the next roast opens its own.
BOOST_AUTO_TEST_CASE(without_a_detector_no_session_opens_until_one_runs) {
  Fixture f;
  auto detector = f.detector;
  f.detector = nullptr;
  auto s = f.sessionizer();
  add_in_tens(*s, "acme", "r1", 1, fixture_roast(true));
  BOOST_TEST(sessions_of(f.ledger.path(), "acme", 10).empty());
  f.detector = detector;
  auto again = fixture_roast(true);
  for (auto& x : again) x.t += 5000;
  add_in_tens(*s, "acme", "r1", 1, again);
  const auto after = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(after.size(), 1u);
  BOOST_TEST(after[0].close_reason == "drop");
  BOOST_TEST(after[0].charge_t > again.front().t);
}

// A roaster's change asking for a report that lands while the due-report pass is starting the
// session's report waits for it: the pass's mission (for the weights it read) is recorded, then
// the change's (for the new ones) — none is started and left unrecorded.
BOOST_AUTO_TEST_CASE(a_roasters_change_during_a_due_report_start_follows_it) {
  Fixture f;
  const std::string id = f.closed_without_report();
  // The pass starts the report; the roaster weighs the roast while its mission starts.
  sessions_test::WeighDuringFirstHandOn during;
  telemetry::SessionOptions o;
  o.report_retry_s = 0.2;
  {
    telemetry::Sessionizer s(
        f.ledger, [&] { return f.detector; }, during.fn(), o);
    during.self = &s;
    during.join();
  }
  const auto& handed = during.handed;  // the roasted weight each report was started for
  BOOST_REQUIRE_EQUAL(handed.size(), 2u);
  BOOST_TEST(!handed[0].roasted_g.has_value());
  BOOST_TEST(handed[1].roasted_g.value_or(0) == 431.0);
  std::vector<std::string> reported;
  ledger::ExportFilter filter;
  filter.stream = "sessions";
  f.ledger.for_each(filter, [&](const ledger::Event& e) {
    if (e.kind == "session.reported")
      reported.emplace_back(boost::json::parse(e.payload).at("mission").as_string());
  });
  BOOST_TEST(reported == (std::vector<std::string>{"m-1", "m-2"}),
             boost::test_tools::per_element());
  BOOST_TEST(telemetry::Sessionizer::get(f.ledger.path(), std::string("acme"), id)
                 ->mission_id.value_or("") == "m-2");
}

// A roaster's change that lands while the close is handing the session on (the close's mission
// not yet recorded when the change read the session) replaces the report the close started: the
// change's hand-on sees that mission, which start_session_report then cancels.
BOOST_AUTO_TEST_CASE(a_change_during_a_close_replaces_the_report_the_close_started) {
  Fixture f;
  // The close hands the session on; the roaster weighs the roast before its mission is recorded.
  sessions_test::WeighDuringFirstHandOn during;
  {
    telemetry::Sessionizer s(
        f.ledger, [&] { return f.detector; }, during.fn(),
        telemetry::SessionOptions{.report_retry_s = 0});
    during.self = &s;
    add_in_tens(s, "acme", "r1", 1, fixture_roast(true));
    during.join();
  }
  const auto& handed = during.handed;  // the mission each hand-on would replace
  BOOST_REQUIRE_EQUAL(handed.size(), 2u);
  BOOST_TEST(!handed[0].mission_id.has_value());
  BOOST_TEST(handed[1].mission_id.value_or("") == "m-1");
}

// A roaster's mark committed while the sessionizer closes the session (from the DROP's batch until
// the report is handed on it holds the session, so the mark's copy into its memory waits): the
// report the close starts has the mark. It had the marks as the worker held them, and the mark,
// having found the session open, asked for no report of its own. Here the mark is stored as the
// mark command stores it, and never reaches the worker's memory.
BOOST_AUTO_TEST_CASE(a_mark_made_as_the_session_closes_is_in_the_report_the_close_starts) {
  Fixture f;
  auto s = f.sessionizer();
  const auto samples = fixture_roast(true);
  const auto log = fixture_log();
  const auto drop = static_cast<std::size_t>(log.timeindex[6]);
  const auto fcs = static_cast<std::size_t>(log.timeindex[2]);
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(
                  samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(drop - 20)));
  const auto open = sessions_of(f.ledger.path(), "acme", 1);
  BOOST_REQUIRE_EQUAL(open.size(), 1u);
  BOOST_REQUIRE(open[0].state == "open");
  f.ledger.append(ledger::NewEvent{
      "acme", "sessions", "session.marked",
      boost::json::object{{"session", open[0].id}, {"event", "FCs"}, {"t", samples[fcs].t}}});
  add_in_tens(*s, "acme", "r1", 1,
              std::vector<telemetry::Sample>(
                  samples.begin() + static_cast<std::ptrdiff_t>(drop - 20), samples.end()));
  std::lock_guard lock(f.mu);
  BOOST_REQUIRE_EQUAL(f.closed.size(), 1u);
  BOOST_TEST(f.closed[0].marks.count("FCs") == 1u);
  BOOST_TEST(f.closed[0].marks.at("FCs") == samples[fcs].t);
}

// A process that stopped right after storing a roast's first batch (its readings before CHARGE)
// never handed it on, and sent again it is a duplicate, which is not handed on either. The next
// process's sessionizer reads the device's stored idle window when it first sees the device, so
// the next batch's CHARGE is not its first reading (taken for a roast already under way): the
// roast has its session.
BOOST_AUTO_TEST_CASE(readings_stored_before_a_restart_are_read_back_for_the_next_charge) {
  Fixture f;
  auto roast = fixture_roast(true);
  std::vector<telemetry::Sample> all;
  for (int i = 120; i > 0; --i) {  // the drum preheated, nothing happening
    telemetry::Sample x = roast.front();
    x.t -= i;
    x.state = 2;
    all.push_back(x);
  }
  all.insert(all.end(), roast.begin(), roast.end());
  const std::size_t charge = 120 + 7;  // the log's CHARGE, index 7
  std::int64_t seq = 0;
  auto store = [&](std::size_t from, std::size_t to) {
    const std::vector<telemetry::Sample> batch(all.begin() + static_cast<std::ptrdiff_t>(from),
                                               all.begin() + static_cast<std::ptrdiff_t>(to));
    storage::Connection c(f.ledger.path(), storage::Connection::Mode::kReadWrite);
    auto st = c.prepare(
        "INSERT INTO telemetry_inbox (tenant, device, boot, seq, kid, digest, sent_at, "
        "received_at, first_t, last_t, count, samples) VALUES ('acme', 'r1', 1, ?, 'k', ?, ?, "
        "'2027-01-01T00:00:00.000Z', ?, ?, ?, ?)");
    ++seq;
    st.bind(1, seq).bind(2, "d" + std::to_string(seq)).bind_real(3, batch.back().t);
    st.bind_real(4, batch.front().t).bind_real(5, batch.back().t);
    st.bind(6, static_cast<std::int64_t>(batch.size()))
        .bind(7, boost::json::serialize(telemetry::samples_json(batch)));
    st.step();
    return batch;
  };
  store(0, charge);  // stored, then the process stopped: never handed on
  auto s = f.sessionizer();
  for (std::size_t i = charge; i < all.size(); i += 10) {
    const std::size_t to = std::min(i + 10, all.size());
    auto batch = store(i, to);  // the batch beginning at CHARGE (seq 2) first
    s->add("acme", "r1", 1, std::move(batch), static_cast<std::uint64_t>(seq));
  }
  s->flush();
  const auto sessions = sessions_of(f.ledger.path(), "acme", 10);
  BOOST_REQUIRE_EQUAL(sessions.size(), 1u);
  BOOST_TEST(sessions[0].close_reason == "drop");
  BOOST_TEST(std::abs(sessions[0].charge_t - all[charge].t) <= 3.0);
}
