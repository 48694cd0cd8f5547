// The default event_detector node (artisan) against the kind's contract, and its parity suite
// against itself on the embedded golden recordings (the cases parse and the suite runs).
#define BOOST_TEST_MODULE event_detector_artisan
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "artisan_detector.hpp"
#include "kiln/testkit/boost_test.hpp"
#include "kiln/testkit/event_detector.hpp"

namespace fs = std::filesystem;

namespace {

std::shared_ptr<kiln::nodes::EventDetector> make_artisan(const boost::json::object&) {
  return std::make_shared<kiln::roast::ArtisanDetector>();
}

// A node that finds nothing: the contract must reject it.
class BlindDetector final : public kiln::nodes::EventDetector {
 public:
  kiln::nodes::RoastEvents detect(const kiln::nodes::RoastCurve& c) const override {
    c.validate();
    return {};
  }
};

// A node whose CHARGE is 10 s late: parity must reject it.
class LateDetector final : public kiln::nodes::EventDetector {
 public:
  kiln::nodes::RoastEvents detect(const kiln::nodes::RoastCurve& c) const override {
    auto e = kiln::roast::ArtisanDetector().detect(c);
    if (e.charge >= 0) {
      const double want = c.time[static_cast<std::size_t>(e.charge)] + 10;
      while (e.charge + 1 < static_cast<int>(c.time.size()) &&
             c.time[static_cast<std::size_t>(e.charge)] < want)
        ++e.charge;
    }
    return e;
  }
};

// A node whose TP is far past the curve's end: the suites must fail it, not read there.
class OutsideDetector final : public kiln::nodes::EventDetector {
 public:
  kiln::nodes::RoastEvents detect(const kiln::nodes::RoastCurve& c) const override {
    auto e = kiln::roast::ArtisanDetector().detect(c);
    e.tp = static_cast<int>(c.time.size()) + (1 << 28);
    return e;
  }
};

// A node that reads the phase temperatures as °C whatever the curve's unit (converting them for
// a °F curve): its DRY END and FCs on a °F curve are wrong.
class CelsiusPhasesDetector final : public kiln::nodes::EventDetector {
 public:
  kiln::nodes::RoastEvents detect(const kiln::nodes::RoastCurve& c) const override {
    auto copy = c;
    if (c.unit == 'F')
      for (auto& v : copy.phases) v = v * 9.0 / 5.0 + 32.0;
    return kiln::roast::ArtisanDetector().detect(copy);
  }
};

const kiln::testkit::CheckResult* check_named(const kiln::testkit::SuiteReport& r,
                                              const std::string& name) {
  for (const auto& c : r.checks)
    if (c.name == name) return &c;
  return nullptr;
}

std::vector<kiln::testkit::EventDetectorCase> golden_cases() {
  std::vector<kiln::testkit::EventDetectorCase> out;
  const fs::path dir = fs::path(KILN_SOURCE_DIR) / "tests/parity/event_detector/cases";
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path());
    std::stringstream s;
    s << in.rdbuf();
    auto more = kiln::testkit::parse_event_detector_cases(s.str(), e.path().filename().string());
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(artisan_passes_the_contract) {
  KILN_CHECK_SUITE(kiln::testkit::run_event_detector_contract(make_artisan));
}

BOOST_AUTO_TEST_CASE(a_detector_that_finds_nothing_fails_the_contract) {
  auto report = kiln::testkit::run_event_detector_contract(
      [](const boost::json::object&) { return std::make_shared<BlindDetector>(); });
  BOOST_TEST(!report.passed());
  // Failed for what it finds, not for failing to construct.
  const auto* constructs = check_named(report, "constructs with an empty kind config");
  BOOST_REQUIRE(constructs);
  BOOST_TEST(constructs->passed);
  const auto* stated = check_named(report, "the roaster's state channel decides CHARGE and DROP");
  BOOST_REQUIRE(stated);
  BOOST_TEST(!stated->passed);
}

BOOST_AUTO_TEST_CASE(an_event_outside_the_curve_fails_the_suites_and_is_refused_by_the_kernel) {
  const auto make = [](const boost::json::object&) { return std::make_shared<OutsideDetector>(); };
  auto report = kiln::testkit::run_event_detector_contract(make);
  BOOST_TEST(!report.passed());
  const auto* check = check_named(report, "every event is a reading of the curve, or none");
  BOOST_REQUIRE(check);
  BOOST_TEST(!check->passed);
  BOOST_TEST(check->detail.find("returned TP at reading") != std::string::npos, check->detail);
  BOOST_TEST(
      !kiln::testkit::run_event_detector_parity(make_artisan, make, golden_cases(), {}).passed());
  const auto c = golden_cases().front().curve;
  BOOST_CHECK_THROW(OutsideDetector().detect(c).validate(c), std::logic_error);
  BOOST_CHECK_NO_THROW(kiln::roast::ArtisanDetector().detect(c).validate(c));
}

BOOST_AUTO_TEST_CASE(phase_temperatures_are_in_the_curves_unit) {
  auto report = kiln::testkit::run_event_detector_contract(
      [](const boost::json::object&) { return std::make_shared<CelsiusPhasesDetector>(); });
  const auto* check = check_named(report, "a Fahrenheit curve has the same events");
  BOOST_REQUIRE(check);
  BOOST_TEST(!check->passed, check->detail);
}

// The golden cases parse and the parity suite checks each of them (artisan against itself: a
// candidate's parity run is the same suite; artisan's events against Artisan's own results on
// these recordings are parity_roast_analysis's).
BOOST_AUTO_TEST_CASE(the_parity_suite_checks_every_golden_case) {
  auto cases = golden_cases();
  BOOST_TEST(cases.size() >= 6u);
  const auto report =
      kiln::testkit::run_event_detector_parity(make_artisan, make_artisan, cases, {});
  KILN_CHECK_SUITE(report);
  for (const auto& c : cases) BOOST_TEST(check_named(report, c.name) != nullptr, c.name);
}

BOOST_AUTO_TEST_CASE(a_late_charge_fails_parity) {
  const auto cases = golden_cases();
  auto report = kiln::testkit::run_event_detector_parity(
      make_artisan, [](const boost::json::object&) { return std::make_shared<LateDetector>(); },
      cases, {});
  BOOST_TEST(!report.passed());
  // Both nodes construct; every case fails, on its CHARGE.
  const auto* constructs = check_named(report, "both nodes construct");
  BOOST_REQUIRE(constructs);
  BOOST_TEST(constructs->passed);
  for (const auto& c : cases) {
    const auto* check = check_named(report, c.name);
    BOOST_REQUIRE_MESSAGE(check, c.name);
    BOOST_TEST(!check->passed, c.name << ": " << check->detail);
  }
}

BOOST_AUTO_TEST_CASE(a_malformed_case_names_its_file) {
  try {
    kiln::testkit::parse_event_detector_cases(R"({"name": "x", "time": [0, 1], "bt": [1]})",
                                              "broken.json");
    BOOST_FAIL("a case whose channels disagree was accepted");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(std::string(e.what()).find("broken.json") != std::string::npos, e.what());
  }
}
