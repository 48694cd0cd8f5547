// Signed telemetry envelopes (COSE_Sign1, Ed25519, CBOR): round trip, every refusal, and interop
// with an independent implementation (npm `cbor` + Node's crypto, tests/integration/validators).
#define BOOST_TEST_MODULE telemetry
#include <boost/test/unit_test.hpp>

#include <sodium.h>

#include <fstream>
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "support/process.hpp"
#include "telemetry/envelope.hpp"

using namespace kiln;
using namespace kiln::telemetry;
namespace json = boost::json;

namespace {

Batch sample_batch() {
  Batch b;
  b.device = {"r1-2048", 1764630000};
  b.seq = 42;
  b.sent_at = 1764633600.25;
  for (int i = 0; i < 10; ++i)
    b.samples.push_back(Sample{1764633590.0 + i, 150.0 + i * 0.5, 220.0, 8.5, 7, 4, 9, 6});
  return b;
}

auto lookup(const KeyPair& k) {
  return [&k](const std::string& kid) -> std::optional<PublicKey> {
    if (kid == k.kid) return k.pub;
    return std::nullopt;
  };
}

std::string hex(const PublicKey& k) {
  char out[65];
  sodium_bin2hex(out, sizeof out, k.data(), k.size());
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_envelope_opens_with_its_key_tenant_and_stream) {
  auto key = generate_key("dev-1#1");
  auto env = sign_envelope(sample_batch(), key, "acme", "roaster-1");
  EnvelopeError err;
  auto opened = open_envelope(env, "acme", "roaster-1", lookup(key), &err);
  BOOST_REQUIRE_MESSAGE(opened, err.reason << ": " << err.message);
  BOOST_TEST(opened->kid == "dev-1#1");
  BOOST_TEST((opened->batch == sample_batch()));
}

BOOST_AUTO_TEST_CASE(every_refusal_has_its_reason) {
  auto key = generate_key("dev-1#1");
  auto env = sign_envelope(sample_batch(), key, "acme", "roaster-1");
  auto refused = [&](const std::string& e, const char* tenant, const KeyPair& k) {
    EnvelopeError err;
    auto r = open_envelope(e, tenant, "roaster-1", lookup(k), &err);
    BOOST_TEST(!r);
    return err;
  };
  // Another tenant (the external AAD): the signature does not cover it.
  BOOST_TEST(refused(env, "globex", key).reason == "bad_signature");
  // One flipped payload byte.
  std::string flipped = env;
  flipped[flipped.size() - 70] ^= 0x01;
  BOOST_TEST(refused(flipped, "acme", key).reason == "bad_signature");
  // An unknown (or revoked) key id.
  auto other = generate_key("dev-2#1");
  BOOST_TEST(refused(env, "acme", other).reason == "unknown_key");
  // Truncated, garbage, trailing bytes.
  BOOST_TEST(refused(env.substr(0, env.size() / 2), "acme", key).reason == "malformed");
  BOOST_TEST(refused("hello", "acme", key).reason == "malformed");
  BOOST_TEST(refused(env + "x", "acme", key).reason == "malformed");
  // Signed by the right key id with another key.
  auto impostor = generate_key("dev-1#1");
  auto forged = sign_envelope(sample_batch(), impostor, "acme", "roaster-1");
  BOOST_TEST(refused(forged, "acme", key).reason == "bad_signature");
}

BOOST_AUTO_TEST_CASE(interop_with_an_independent_cose_implementation) {
  const std::string npm = std::string(KILN_SOURCE_DIR) + "/tests/integration/npm_validators.sh";
  auto setup = test::run({"/bin/bash", npm, KILN_BUILD_DIR, KILN_SOURCE_DIR});
  BOOST_REQUIRE_MESSAGE(setup.exit_code == 0, setup.err);
  std::string dir = setup.out.substr(0, setup.out.find('\n'));
  const std::string script = dir + "/cose-interop.js";
  test::TempDir tmp;

  // kiln signs, Node verifies and decodes.
  auto key = generate_key("r1-2048#3");
  const auto file = (tmp.path() / "kiln.cose").string();
  std::ofstream(file, std::ios::binary) << sign_envelope(sample_batch(), key, "acme", "roaster-1");
  auto v = test::run(
      {"/usr/bin/env", "node", script, "verify", file, hex(key.pub), "acme", "roaster-1"});
  BOOST_REQUIRE_MESSAGE(v.exit_code == 0, v.err);
  auto out = json::parse(v.out);
  BOOST_TEST(out.at("kid").as_string() == "r1-2048#3");
  BOOST_TEST(out.at("payload").at("seq").to_number<int>() == 42);
  BOOST_TEST(out.at("payload").at("device").as_string() == "r1-2048");
  BOOST_TEST(out.at("payload").at("samples").as_array().size() == 10u);
  auto wrong = test::run(
      {"/usr/bin/env", "node", script, "verify", file, hex(key.pub), "acme", "other-stream"});
  BOOST_TEST(wrong.exit_code != 0);

  // Node signs, kiln verifies and decodes.
  const auto nfile = (tmp.path() / "node.cose").string();
  auto s =
      test::run({"/usr/bin/env", "node", script, "sign", nfile, "node-r1#1", "acme", "roaster-1"});
  BOOST_REQUIRE_MESSAGE(s.exit_code == 0, s.err);
  PublicKey pub{};
  std::size_t len = 0;
  const std::string pubhex = s.out.substr(0, 64);
  BOOST_REQUIRE(sodium_hex2bin(pub.data(), pub.size(), pubhex.data(), pubhex.size(), nullptr, &len,
                               nullptr) == 0);
  std::ifstream in(nfile, std::ios::binary);
  std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EnvelopeError err;
  auto opened = open_envelope(
      env, "acme", "roaster-1",
      [&](const std::string& kid) -> std::optional<PublicKey> {
        if (kid == "node-r1#1") return pub;
        return std::nullopt;
      },
      &err);
  BOOST_REQUIRE_MESSAGE(opened, err.reason << ": " << err.message);
  BOOST_TEST(opened->batch.device.device == "node-r1");
  BOOST_TEST(opened->batch.seq == 7u);
  BOOST_TEST(opened->batch.sent_at == 1764633600.5);
  BOOST_REQUIRE(opened->batch.samples.size() == 2u);
  BOOST_TEST(opened->batch.samples[0].bt == 200.0);
  BOOST_TEST(opened->batch.samples[0].heater == 8);
  BOOST_TEST(opened->batch.samples[1].ror == -12.5);
  BOOST_TEST(!open_envelope(
      env, "acme", "roaster-2", [&](const std::string&) -> std::optional<PublicKey> { return pub; },
      &err));
  BOOST_TEST(err.reason == "bad_signature");
}
