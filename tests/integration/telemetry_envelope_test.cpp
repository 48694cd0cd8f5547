// Signed telemetry envelopes (COSE_Sign1, Ed25519, CBOR): round trip, every refusal, and interop
// with an independent implementation (npm `cbor` + Node's crypto, tests/integration/validators).
#define BOOST_TEST_MODULE telemetry
#include <boost/test/unit_test.hpp>

#include <sodium.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <boost/json.hpp>

#include "support/process.hpp"
#include "telemetry/devices.hpp"
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
  BOOST_TEST(refused(env + "x", "acme", key).message == "bytes after the COSE_Sign1 structure");
  // Bytes that are no COSE_Sign1 at all are said to be that, not "bytes after" one.
  BOOST_TEST(refused(std::string("\x01\x02\x03"), "acme", key).message ==
             "not a COSE_Sign1 array [protected, unprotected, payload, signature] (the body is "
             "not one CBOR item)");
  // Signed by the right key id with another key.
  auto impostor = generate_key("dev-1#1");
  auto forged = sign_envelope(sample_batch(), impostor, "acme", "roaster-1");
  BOOST_TEST(refused(forged, "acme", key).reason == "bad_signature");
  // An integrator's framing mistakes, each said: another algorithm (ES256, -7, a common default),
  // another tag (17, COSE_Mac0), no key id, a signature of the wrong length.
  auto framed = [&](std::int64_t alg, bool with_kid, std::uint64_t tag, std::size_t sig_bytes) {
    std::string prot;
    cbor::head(prot, 5, with_kid ? 2 : 1);
    cbor::put_int(prot, 1);
    cbor::put_int(prot, alg);
    if (with_kid) {
      cbor::put_int(prot, 4);
      cbor::put_bytes(prot, key.kid);
    }
    std::string out;
    cbor::head(out, 6, tag);
    cbor::head(out, 4, 4);
    cbor::put_bytes(out, prot);
    cbor::head(out, 5, 0);
    cbor::put_bytes(out, encode_batch(sample_batch()));
    cbor::put_bytes(out, std::string(sig_bytes, '\x5a'));
    return out;
  };
  auto es256 = refused(framed(-7, true, 18, 64), "acme", key);
  BOOST_TEST(es256.reason == "unsupported_alg");
  BOOST_TEST(es256.message == "the protected header must say alg EdDSA (-8)");
  auto mac0 = refused(framed(-8, true, 17, 64), "acme", key);
  BOOST_TEST(mac0.reason == "malformed");
  BOOST_TEST(mac0.message == "CBOR tag 17, expected 18 (COSE_Sign1)");
  BOOST_TEST(refused(framed(-8, false, 18, 64), "acme", key).message ==
             "the protected header has no key id (4)");
  BOOST_TEST(refused(framed(-8, true, 18, 63), "acme", key).message ==
             "an Ed25519 signature is 64 bytes, this one 63");
  // The same framing with a real signature's length but not the key's: a bad signature, which
  // shows the framing itself is read as kiln's.
  BOOST_TEST(refused(framed(-8, true, 18, 64), "acme", key).reason == "bad_signature");
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
  BOOST_TEST(wrong.exit_code == 1, wrong.err);  // refused, not crashed
  BOOST_TEST(wrong.err.find("FAIL: signature does not verify") != std::string::npos, wrong.err);

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

  // The published test vector's envelope verifies and decodes there too, with its public key.
  std::ifstream vin(std::string(KILN_SOURCE_DIR) + "/tests/fixtures/telemetry/test-vector.json");
  std::stringstream vtext;
  vtext << vin.rdbuf();
  const auto vector = json::parse(vtext.str()).as_object();
  const std::string env_hex(vector.at("envelope").as_string());
  std::string env_bytes(env_hex.size() / 2, '\0');
  BOOST_REQUIRE(sodium_hex2bin(reinterpret_cast<unsigned char*>(env_bytes.data()), env_bytes.size(),
                               env_hex.data(), env_hex.size(), nullptr, &len, nullptr) == 0);
  const auto vfile = (tmp.path() / "vector.cose").string();
  std::ofstream(vfile, std::ios::binary) << env_bytes;
  auto vv = test::run({"/usr/bin/env", "node", script, "verify", vfile,
                       std::string(vector.at("public_key").as_string()),
                       std::string(vector.at("tenant").as_string()),
                       std::string(vector.at("stream").as_string())});
  BOOST_REQUIRE_MESSAGE(vv.exit_code == 0, vv.err);
  const auto vout = json::parse(vv.out);
  BOOST_TEST(vout.at("kid") == vector.at("kid"));
  BOOST_TEST(vout.at("payload").at("device") == vector.at("payload").at("device"));
  BOOST_TEST(vout.at("payload").at("samples").as_array().size() == 2u);
}

namespace {

// A small CBOR writer for payloads the encoder would never make.
struct Cbor {
  std::string out;
  Cbor& head(int major, std::uint64_t v) {
    const auto m = static_cast<unsigned char>(major << 5);
    if (v < 24) {
      out += static_cast<char>(m | v);
    } else if (v <= 0xFF) {
      out += static_cast<char>(m | 24);
      out += static_cast<char>(v);
    } else {
      out += static_cast<char>(m | 27);
      for (int s = 56; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
    }
    return *this;
  }
  Cbor& text(std::string_view t) {
    head(3, t.size());
    out += t;
    return *this;
  }
  Cbor& uint(std::uint64_t v) { return head(0, v); }
  Cbor& nint(std::int64_t v) { return head(1, static_cast<std::uint64_t>(-1 - v)); }
  Cbor& f64(double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, 8);
    out += static_cast<char>(0xFB);
    for (int s = 56; s >= 0; s -= 8) out += static_cast<char>((bits >> s) & 0xFF);
    return *this;
  }
  Cbor& raw(std::initializer_list<unsigned char> bytes) {
    for (auto b : bytes) out += static_cast<char>(b);
    return *this;
  }
};

// The payload's head fields, then `samples` as given.
Cbor payload_with(std::uint64_t extra_fields = 0) {
  Cbor c;
  c.head(5, 5 + extra_fields).text("device").text("r1-7").text("boot").uint(3);
  c.text("seq").uint(9).text("sent_at").f64(100.5).text("samples");
  return c;
}

std::string decode_error(const std::string& cbor) {
  EnvelopeError err;
  auto b = detail::decode_batch(cbor, &err);
  BOOST_TEST(!b.has_value());
  BOOST_TEST(err.reason == "bad_payload");
  return err.message;
}

}  // namespace

BOOST_AUTO_TEST_CASE(batches_decode_as_they_were_encoded) {
  Batch b = sample_batch();
  b.samples.push_back(Sample{1764633600.0, -12.5, 0.0, -3.25, 0, 0, 0, -1});
  for (int i = 0; i < 200; ++i)
    b.samples.push_back(Sample{1764633601.0 + i, 200, 230, 9, 1, 2, 3, 6});
  EnvelopeError err;
  auto got = detail::decode_batch(encode_batch(b), &err);
  BOOST_REQUIRE_MESSAGE(got.has_value(), err.message);
  BOOST_TEST(got->device.device == b.device.device);
  BOOST_TEST(got->device.boot == b.device.boot);
  BOOST_TEST(got->seq == b.seq);
  BOOST_TEST(got->sent_at == b.sent_at);
  BOOST_TEST((got->samples == b.samples));
}

// Other encoders: integers, half and single floats as numbers; keys in any order; unknown keys
// (also non-text ones, with nested values) skipped; a repeated key counts once (the first);
// ror and the settings optional.
BOOST_AUTO_TEST_CASE(batches_from_other_encoders_decode) {
  Cbor c;
  c.head(5, 7).text("samples").head(4, 2);
  c.head(5, 5).text("bt").raw({0xF9, 0x3C, 0x00});   // half 1.0
  c.text("t").uint(1000).text("t").uint(5);          // a repeated key: the first counts
  c.text("et").raw({0xFA, 0x40, 0x49, 0x0F, 0xDB});  // single 3.1415927
  c.text("note").head(4, 2).head(5, 1).uint(1).text("x").head(2, 1).raw({0x00});
  c.head(5, 3).text("t").uint(1001).text("bt").nint(-4).text("et").f64(230.5);
  c.text("zzz").head(6, 1).uint(0);  // a tagged value under an unknown key
  c.uint(7).text("int key");         // a non-text key
  c.text("sent_at").uint(100).text("seq").uint(9).text("boot").uint(3).text("device").text("r1-7");
  EnvelopeError err;
  std::vector<std::string> ignored;
  auto got = detail::decode_batch(c.out, &err, &ignored);
  BOOST_REQUIRE_MESSAGE(got.has_value(), err.message);
  // What was skipped is named (a misspelt optional key would otherwise vanish without a word).
  const std::vector<std::string> skipped{"payload.zzz", "payload.(a key that is not text)",
                                         "payload.samples[].t (repeated: the first counts)",
                                         "payload.samples[].note"};
  BOOST_TEST(ignored == skipped, boost::test_tools::per_element());
  BOOST_TEST(got->device.device == "r1-7");
  BOOST_TEST(got->sent_at == 100.0);
  BOOST_REQUIRE(got->samples.size() == 2u);
  BOOST_TEST(got->samples[0].t == 1000.0);
  BOOST_TEST(got->samples[0].bt == 1.0);
  BOOST_TEST(std::abs(got->samples[0].et - 3.1415927) < 1e-6);
  BOOST_TEST(got->samples[0].ror == 0.0);
  BOOST_TEST(got->samples[1].bt == -4.0);
  BOOST_TEST(got->samples[1].state == 0);
}

BOOST_AUTO_TEST_CASE(bad_batches_are_refused_naming_what_is_wrong) {
  auto sample = [](Cbor& c) {
    c.head(5, 3).text("t").uint(1).text("bt").uint(2).text("et").uint(3);
  };
  BOOST_TEST(decode_error(Cbor{}.head(4, 0).out) == "the payload is not a CBOR map");
  BOOST_TEST(decode_error(Cbor{}.head(5, 0).out) == "payload.device must be text");
  {
    Cbor c;
    c.head(5, 5).text("device").text("").text("boot").uint(3).text("seq").uint(9);
    c.text("sent_at").f64(1).text("samples").head(4, 0);
    BOOST_TEST(decode_error(c.out) == "payload.device must be text");
  }
  {
    Cbor c;
    c.head(5, 5).text("device").text("d").text("boot").nint(-1).text("seq").uint(9);
    c.text("sent_at").f64(1).text("samples").head(4, 0);
    BOOST_TEST(decode_error(c.out) == "payload.boot must be an unsigned integer");
  }
  {
    Cbor c;
    c.head(5, 5).text("device").text("d").text("boot").uint(1).text("seq").uint(9);
    c.text("sent_at").text("noon").text("samples").head(4, 0);
    BOOST_TEST(decode_error(c.out) == "payload.sent_at must be a number");
  }
  BOOST_TEST(decode_error(payload_with().head(5, 0).out) == "payload.samples must be an array");
  for (const double undefined : {std::nan(""), HUGE_VAL}) {  // a clock that says nothing
    Cbor c;
    c.head(5, 5).text("device").text("r1-7").text("boot").uint(3);
    c.text("seq").uint(9).text("sent_at").f64(undefined).text("samples").head(4, 0);
    BOOST_TEST(decode_error(c.out) ==
               "payload.sent_at is not finite (NaN or infinity); it is the device's clock in Unix "
               "seconds");
  }
  BOOST_TEST(decode_error(payload_with().head(4, 1).uint(1).out) == "each sample must be a map");
  {
    auto c = payload_with().head(4, 2);
    sample(c);
    c.head(5, 2).text("t").uint(1).text("et").uint(3);
    BOOST_TEST(decode_error(c.out) == "sample 1 needs numbers t, bt and et");
  }
  {
    auto c = payload_with().head(4, 1);
    c.head(5, 3).text("t").uint(1).text("bt").f64(std::nan("")).text("et").uint(3);
    // A number, but not a finite one: a bad reading (bad_samples), said as such.
    EnvelopeError err;
    BOOST_TEST(!detail::decode_batch(c.out, &err).has_value());
    BOOST_TEST(err.reason == "bad_samples");
    BOOST_TEST(err.message == "sample 0 has a t, bt or et that is not finite (NaN or infinity)");
  }
  {
    auto c = payload_with().head(4, 1);
    c.head(5, 4).text("t").uint(1).text("bt").uint(2).text("et").uint(3).text("ror").text("x");
    BOOST_TEST(decode_error(c.out) == "sample 0: ror must be a number (°C/min)");
  }
  for (const double undefined : {std::nan(""), HUGE_VAL}) {
    // A device has no RoR for its first readings and may send NaN: the reading is kept, without
    // one (the whole batch was refused).
    auto c = payload_with().head(4, 1);
    c.head(5, 4).text("t").uint(1).text("bt").uint(2).text("et").uint(3).text("ror").f64(undefined);
    EnvelopeError err;
    auto got = detail::decode_batch(c.out, &err);
    BOOST_REQUIRE_MESSAGE(got.has_value(), err.message);
    BOOST_TEST(got->samples[0].ror == 0.0);
    BOOST_TEST(got->samples[0].bt == 2.0);
  }
  {
    auto c = payload_with().head(4, 1);
    c.head(5, 4).text("t").uint(1).text("bt").uint(2).text("et").uint(3).text("fan").f64(2.5);
    BOOST_TEST(decode_error(c.out) ==
               "sample 0: fan must be an integer from -2147483648 to 2147483647 (the level or "
               "state as the machine reports it)");
  }
  for (bool negative : {false, true}) {  // beyond int: refused, not wrapped
    auto c = payload_with().head(4, 1);
    c.head(5, 4).text("t").uint(1).text("bt").uint(2).text("et").uint(3).text("state");
    if (negative)
      c.nint(-2147483650LL);
    else
      c.uint(4294967302ULL);
    BOOST_TEST(decode_error(c.out) ==
               "sample 0: state must be an integer from -2147483648 to 2147483647 (the level or "
               "state as the machine reports it)");
  }
  {  // the ends of int are kept
    auto c = payload_with().head(4, 1);
    c.head(5, 5).text("t").uint(1).text("bt").uint(2).text("et").uint(3);
    c.text("heater").uint(2147483647).text("drum").nint(-2147483648LL);
    EnvelopeError err;
    auto got = detail::decode_batch(c.out, &err);
    BOOST_REQUIRE_MESSAGE(got.has_value(), err.message);
    BOOST_TEST(got->samples[0].heater == 2147483647);
    BOOST_TEST(got->samples[0].drum == -2147483647 - 1);
  }
  // CBOR itself wrong: truncated, too deep, indefinite lengths, a string past the end.
  {
    auto c = payload_with().head(4, 1);
    sample(c);
    const std::string whole = c.out;
    for (std::size_t n : {whole.size() - 1, whole.size() - 5, std::size_t{20}})
      BOOST_TEST(decode_error(whole.substr(0, n)).find("not valid CBOR") != std::string::npos);
  }
  {
    auto c = payload_with(1).head(4, 0).text("deep");
    for (int i = 0; i < 20; ++i) c.head(4, 1);
    c.uint(0);
    BOOST_TEST(decode_error(c.out) == "the payload is not valid CBOR: nested deeper than 16");
  }
  BOOST_TEST(decode_error(payload_with().raw({0x9F, 0xFF}).out) ==
             "the payload is not valid CBOR: indefinite lengths are not supported");
  {
    auto c = payload_with(1).head(4, 0).text("note").head(3, 200);
    c.out += "short";
    BOOST_TEST(decode_error(c.out) ==
               "the payload is not valid CBOR: string longer than the input");
  }
  BOOST_TEST(decode_error(payload_with().head(4, 1000).out) ==
             "the payload is not valid CBOR: container longer than the input");
}

namespace {

std::string hex_of(std::string_view bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                 bytes.size());
  out.pop_back();
  return out;
}

}  // namespace

// The test vector integrators build their envelopes against (docs/architecture/telemetry.md):
// a fixed seed signs a fixed batch, and every intermediate — payload, external AAD,
// Sig_structure, signature, envelope — is what kiln makes today. Ed25519 is deterministic, so a
// change to any byte of the format fails here before it reaches a device in the field.
BOOST_AUTO_TEST_CASE(the_published_test_vector_is_what_kiln_signs) {
  std::ifstream in(std::string(KILN_SOURCE_DIR) + "/tests/fixtures/telemetry/test-vector.json");
  BOOST_REQUIRE(in);
  std::stringstream text;
  text << in.rdbuf();
  const auto vector = json::parse(text.str()).as_object();

  KeyPair key;
  unsigned char seed[crypto_sign_SEEDBYTES];
  std::size_t len = 0;
  const std::string seed_hex(vector.at("seed").as_string());
  BOOST_REQUIRE(sodium_hex2bin(seed, sizeof seed, seed_hex.data(), seed_hex.size(), nullptr, &len,
                               nullptr) == 0);
  BOOST_REQUIRE(crypto_sign_seed_keypair(key.pub.data(), key.secret.data(), seed) == 0);
  key.kid = key_id(key.pub);

  Batch b;
  const auto& p = vector.at("payload").as_object();
  b.device = {std::string(p.at("device").as_string()), p.at("boot").to_number<std::uint64_t>()};
  b.seq = p.at("seq").to_number<std::uint64_t>();
  b.sent_at = p.at("sent_at").to_number<double>();
  for (const auto& v : p.at("samples").as_array()) {
    const auto& o = v.as_object();
    b.samples.push_back(Sample{o.at("t").to_number<double>(), o.at("bt").to_number<double>(),
                               o.at("et").to_number<double>(), o.at("ror").to_number<double>(),
                               o.at("heater").to_number<int>(), o.at("fan").to_number<int>(),
                               o.at("drum").to_number<int>(), o.at("state").to_number<int>()});
  }
  const std::string tenant(vector.at("tenant").as_string());
  const std::string stream(vector.at("stream").as_string());
  const std::string envelope = sign_envelope(b, key, tenant, stream);
  EnvelopeError err;
  auto parsed = detail::parse_envelope(envelope, tenant, stream, &err);
  BOOST_REQUIRE_MESSAGE(parsed, err.message);
  Cbor aad;
  aad.head(4, 2).text(tenant).text(stream);

  json::object made{{"public_key", hex(key.pub)},
                    {"kid", key.kid},
                    {"payload_cbor", hex_of(encode_batch(b))},
                    {"external_aad", hex_of(aad.out)},
                    {"sig_structure", hex_of(parsed->signed_bytes)},
                    {"signature", hex_of(parsed->signature)},
                    {"envelope", hex_of(envelope)}};
  for (const auto& [name, value] : made)
    BOOST_TEST(vector.at(name) == value, name << " differs: kiln makes " << json::serialize(value));
  BOOST_TEST(parsed->payload == encode_batch(b));
  BOOST_TEST(detail::verify(*parsed, key.pub));
  // The SDK's envelope type alone (kiln/telemetry.hpp, what a C++ device builds against) frames
  // the same bytes: the Sig_structure to sign, and the envelope around the signature.
  auto bytes = [&](const char* name) {
    const std::string h(vector.at(name).as_string());
    std::string out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2)
      out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
    return out;
  };
  auto sdk = kiln::telemetry::Envelope::for_key(key.kid, bytes("payload_cbor"));
  BOOST_TEST(hex_of(kiln::telemetry::Envelope::external_aad(tenant, stream)) ==
             std::string(vector.at("external_aad").as_string()));
  BOOST_TEST(hex_of(sdk.to_be_signed(tenant, stream)) ==
             std::string(vector.at("sig_structure").as_string()));
  sdk.signature = bytes("signature");
  BOOST_TEST(hex_of(sdk.encode()) == std::string(vector.at("envelope").as_string()));
}
