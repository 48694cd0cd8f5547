// Missions under kill -9: a `kiln mission work` process is killed at random points while missions
// run and tools append audit events; new missions keep arriving from other processes. After
// every kill the ledger verifies and holds every event the dead process had acknowledged; in the
// end every mission reaches exactly one terminal state and the tables replay from the ledger.
// KILN_RELIABILITY_ITERATIONS raises the iteration count (scripts/soak).
#define BOOST_TEST_MODULE missions_reliability
#include <csignal>
#include <cstdlib>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "ledger/ledger.hpp"
#include "storage/sqlite.hpp"
#include "support/process.hpp"

namespace json = boost::json;
using namespace kiln;
using namespace std::chrono_literals;

namespace {

int iterations() {
  const char* v = std::getenv("KILN_RELIABILITY_ITERATIONS");
  return v && std::atoi(v) > 0 ? std::atoi(v) : 50;
}

struct Deployment {
  test::TempDir dir;
  std::filesystem::path db = dir.path() / "kiln.db";
  std::vector<std::string> cmd(std::vector<std::string> args, const char* level = "warn") const {
    std::vector<std::string> argv = {KILN_TEST_BIN,
                                     "--log-level",
                                     level,
                                     "--set",
                                     "storage.path=" + db.string(),
                                     "--set",
                                     "gates.dir=" + (dir.path() / "gates").string(),
                                     "--set",
                                     "missions.lease_ms=400",
                                     "--set",
                                     "missions.poll_ms=10",
                                     "--set",
                                     "missions.max_reclaims=1000"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // Starts a mission from another process; returns its id once acknowledged ("" on failure).
  std::string start(int n) const {
    auto r = test::run(cmd({"mission", "start", "hello", "--param", "who=w" + std::to_string(n),
                            "--param", "pause_ms=150", "--json"}));
    if (r.exit_code != 0) return "";
    return std::string(json::parse(r.out).at("mission").at("id").as_string());
  }
};

std::string hash_at(const std::filesystem::path& db, std::int64_t seq) {
  storage::Connection c(db, storage::Connection::Mode::kReadOnly);
  auto st = c.prepare("SELECT hash FROM ledger WHERE seq = ?");
  st.bind(1, seq);
  return st.step() ? st.text(0) : "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(kill_9_while_missions_run_loses_nothing_and_finishes_each_once) {
  Deployment d;
  std::set<std::string> acknowledged_missions;
  for (int i = 0; i < 10; ++i) {
    auto id = d.start(i);
    BOOST_REQUIRE_MESSAGE(!id.empty(), "mission start failed before any kill");
    acknowledged_missions.insert(id);
  }
  std::mt19937 rng(20261122);
  std::uniform_int_distribution<int> delay_ms(20, 300);
  const std::regex committed("ledger committed seq=([0-9]+)-([0-9]+) head=([0-9a-f]{64})");
  std::int64_t kills_with_commits = 0;
  const int n = iterations();
  for (int it = 0; it < n; ++it) {
    test::Child worker(d.cmd({"mission", "work", "--workers", "2"}, "trace"), {});
    // Missions keep arriving from another process while the worker runs: each start is
    // acknowledged (a start refused beside a worker would be a lost request, not a skip).
    auto id = d.start(100 + it);
    BOOST_TEST(!id.empty(), "iteration " << it << ": mission start failed beside the worker");
    if (!id.empty()) acknowledged_missions.insert(id);
    // The random delay counts from the worker's first commit, not from its spawn: on a loaded
    // machine a start-up can outlast the whole delay, and a kill before any work tests little.
    worker.wait_for_stderr("ledger committed", 3s);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    worker.signal(SIGKILL);
    auto r = worker.wait(10s);
    // The last commit the dead process logged (each line is written after the commit).
    std::int64_t last = 0;
    std::string head;
    for (std::sregex_iterator m(r.err.begin(), r.err.end(), committed), end; m != end; ++m) {
      last = std::stoll((*m)[2]);
      head = (*m)[3];
    }
    auto v = ledger::verify_file(d.db);
    BOOST_REQUIRE_MESSAGE(v.ok, "iteration " << it << ": ledger broken at seq " << v.first_bad_seq
                                             << ": " << v.reason);
    if (last > 0) {
      ++kills_with_commits;
      BOOST_REQUIRE_MESSAGE(v.checked >= last, "iteration " << it << ": seq " << last
                                                            << " was acknowledged, only "
                                                            << v.checked << " stored");
      BOOST_REQUIRE_MESSAGE(hash_at(d.db, last) == head,
                            "iteration " << it << ": seq " << last << " changed after the kill");
    }
  }
  BOOST_TEST(kills_with_commits > n / 2, "most kills should land after some commits");

  // A clean worker drains what is left, reclaiming missions whose lease lapsed.
  auto drain =
      test::run(d.cmd({"mission", "work", "--workers", "2", "--until-idle"}), {}, {}, 120s);
  BOOST_REQUIRE_MESSAGE(drain.exit_code == 0, drain.err);

  // Every acknowledged mission exists and is DONE; each reached a terminal state exactly once.
  auto list = test::run(d.cmd({"mission", "list", "--limit", "100000", "--json"}));
  BOOST_REQUIRE_EQUAL(list.exit_code, 0);
  std::map<std::string, std::string> states;
  const json::value listed = json::parse(list.out);
  for (const auto& m : listed.as_array())
    states[std::string(m.at("id").as_string())] = std::string(m.at("state").as_string());
  for (const auto& id : acknowledged_missions) {
    BOOST_REQUIRE_MESSAGE(states.count(id), "acknowledged mission " << id << " is missing");
    BOOST_TEST(states[id] == "DONE", id << " is " << states[id]);
  }
  auto exported = test::run(d.cmd({"ledger", "export"}));
  BOOST_REQUIRE_EQUAL(exported.exit_code, 0);
  std::map<std::string, int> terminal_events, claims;
  std::istringstream lines(exported.out);
  for (std::string line; std::getline(lines, line);) {
    const json::value v = json::parse(line);
    const auto& e = v.as_object();
    std::string kind(e.at("kind").as_string());
    if (kind.rfind("mission.", 0) != 0) continue;
    const auto& p = e.at("payload").as_object();
    std::string id(p.at("id").as_string());
    if (kind == "mission.claimed") ++claims[id];
    if (auto* to = p.if_contains("to"))
      if (*to == "DONE" || *to == "FAILED" || *to == "CANCELED" || *to == "BLOCKED")
        ++terminal_events[id];
  }
  int reclaimed = 0;
  for (const auto& [id, state] : states) {
    BOOST_TEST(terminal_events[id] == 1,
               id << " has " << terminal_events[id] << " terminal events");
    reclaimed += claims[id] > 1;
  }
  BOOST_TEST_MESSAGE(states.size()
                     << " missions, " << reclaimed << " reclaimed after a kill, ledger "
                     << ledger::verify_file(d.db).checked << " events");
  BOOST_TEST(reclaimed > 0, "no kill landed while a mission was held; the test proved little");
  BOOST_TEST(ledger::verify_file(d.db).ok);
  if (std::getenv("KILN_KEEP"))
    std::filesystem::copy(d.dir.path(), std::getenv("KILN_KEEP"),
                          std::filesystem::copy_options::overwrite_existing |
                              std::filesystem::copy_options::recursive);
  auto replay = test::run(d.cmd({"ledger", "replay"}));
  BOOST_TEST(replay.exit_code == 0, replay.out << replay.err);
}
