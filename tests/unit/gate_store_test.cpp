// The gate store: records bound to file hash, contract version and ABI version.
#define BOOST_TEST_MODULE gates
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <sodium.h>
#include <boost/test/unit_test.hpp>

#include "common/sha256.hpp"
#include "gates/gate_store.hpp"
#include "kiln/abi.hpp"
#include "plugins/registry.hpp"
#include "support/process.hpp"

using namespace kiln;

namespace {

struct Fixture {
  test::TempDir dir;
  plugins::NodeEntry node;
  gates::GateStore store{dir.path() / "gates"};
  Fixture() {
    node.kind = "tool_strategy";
    node.name = "rules";
    node.provider = "strategy_rules";
    node.file = dir.path() / "plugin.so";
    std::ofstream(node.file) << "plugin bytes";
    node.sha256 = common::sha256_file(node.file);
  }
  gates::GateRecord record(bool passed) const {
    gates::GateRecord r;
    r.kind = node.kind;
    r.node = node.name;
    r.provider = node.provider;
    r.plugin_file = node.file.string();
    r.plugin_sha256 = node.sha256;
    r.contract_version = 1;
    r.abi_version = kAbiVersion;
    r.kiln_version = kVersion;
    r.passed = passed;
    r.ran_at = gates::utc_now_iso8601();
    return r;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(sha256_matches_a_known_vector) {
  BOOST_TEST(common::sha256_hex("abc") ==
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(common::sha256_hex("") ==
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// The hash behind the ledger chain and the API keys must not change with its implementation:
// every length around the 64-byte block and the padding boundary, against libsodium's own,
// on several threads at once (each keeps its own context).
BOOST_AUTO_TEST_CASE(sha256_agrees_with_libsodium_on_every_length) {
  common::ensure_sodium();
  auto reference = [](const std::string& s) {
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(s.data()), s.size());
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, d, sizeof d);
    return std::string(hex);
  };
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::string s;
      for (int n = 0; n < 600; ++n) {
        if (common::sha256_hex(s) != reference(s)) ++mismatches;
        s.push_back(static_cast<char>((n * 131 + t * 7) & 0xff));
      }
    });
  for (auto& th : threads) th.join();
  BOOST_TEST(mismatches.load() == 0);

  // A file larger than the 64 KiB read buffer hashes like its bytes.
  std::string big(200000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 24);
  auto file = std::filesystem::temp_directory_path() / ("kiln-sha-" + std::to_string(::getpid()));
  std::ofstream(file, std::ios::binary) << big;
  BOOST_TEST(common::sha256_file(file) == reference(big));
  std::filesystem::remove(file);
  BOOST_CHECK_THROW(common::sha256_file(file), std::runtime_error);
}

BOOST_FIXTURE_TEST_CASE(states_follow_the_record, Fixture) {
  BOOST_TEST(store.check(node, true, 1).state == gates::GateState::kDefault);
  BOOST_TEST(store.check(node, false, 1).state == gates::GateState::kMissing);
  // A relative gates.dir is named as the absolute directory looked in (it follows the working
  // directory, so a gate run elsewhere is not found).
  BOOST_TEST(store.check(node, false, 1).reason ==
             "no gate record in " + (dir.path() / "gates").string());
  {
    gates::GateStore relative{"var/gates"};
    BOOST_TEST(relative.check(node, false, 1).reason ==
               "no gate record in " + (std::filesystem::current_path() / "var/gates").string());
  }
  store.write(record(false));
  BOOST_TEST(store.check(node, false, 1).state == gates::GateState::kFailed);
  store.write(record(true));
  auto ok = store.check(node, false, 1);
  BOOST_TEST(ok.state == gates::GateState::kPassed);
  BOOST_TEST(ok.usable());
  // Contract version moved on: stale.
  auto newer = store.check(node, false, 2);
  BOOST_TEST(newer.state == gates::GateState::kStale);
  BOOST_TEST(newer.reason.find("contract version") != std::string::npos);
  // Gated by a kiln of another ABI version: stale, saying so.
  auto other_abi = record(true);
  other_abi.abi_version = kAbiVersion + 1;
  store.write(other_abi);
  const auto abi = store.check(node, false, 1);
  BOOST_TEST(abi.state == gates::GateState::kStale);
  BOOST_TEST(abi.reason == "the kiln ABI version changed (gated " +
                               std::to_string(kAbiVersion + 1) + ", now " +
                               std::to_string(kAbiVersion) + ")",
             abi.reason);
}

BOOST_FIXTURE_TEST_CASE(one_changed_byte_makes_the_gate_stale, Fixture) {
  store.write(record(true));
  std::ofstream(node.file) << "plugin bytez";  // one byte differs
  node.sha256 = common::sha256_file(node.file);
  auto c = store.check(node, false, 1);
  BOOST_TEST(c.state == gates::GateState::kStale);
  BOOST_TEST(c.reason.find("plugin file changed") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(records_round_trip_and_history_grows, Fixture) {
  auto r = record(true);
  r.intended_differences = {"case a"};
  store.write(r);
  store.write(r);
  auto back = store.read(node.kind, node.name);
  BOOST_REQUIRE(back);
  BOOST_TEST(back->plugin_sha256 == r.plugin_sha256);
  BOOST_TEST(back->intended_differences == r.intended_differences);
  std::ifstream hist(store.dir() / "history.jsonl");
  int lines = 0;
  for (std::string l; std::getline(hist, l);) ++lines;
  BOOST_TEST(lines == 2);
}

BOOST_FIXTURE_TEST_CASE(a_corrupt_record_is_reported, Fixture) {
  std::filesystem::create_directories(store.dir());
  std::ofstream(store.record_path(node.kind, node.name)) << "{not json";
  BOOST_CHECK_EXCEPTION(store.check(node, false, 1), std::runtime_error, [](const auto& e) {
    return std::string(e.what()).find("delete it and run the gate again") != std::string::npos;
  });
}
