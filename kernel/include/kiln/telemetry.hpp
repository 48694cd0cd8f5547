// kiln/telemetry.hpp — what a roaster telemetry driver produces and what travels to the server:
// readings, the device that sends them, a batch, and the signed envelope around a batch
// (COSE_Sign1 over CBOR with Ed25519; docs/architecture/telemetry.md). Header-only: the
// envelope's framing is here, the signing (libsodium) and the batch's CBOR are the kernel's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::telemetry {

// One reading of a roaster. Temperatures in °C; settings as the machine reports them.
struct Sample {
  double t = 0;    // device time, seconds since the Unix epoch
  double bt = 0;   // bean temperature
  double et = 0;   // environment / drum temperature
  double ror = 0;  // bean rate of rise, °C/min (as the device computes it; 0 if none)
  int heater = 0;  // heater power level
  int fan = 0;     // fan level
  int drum = 0;    // drum speed level
  int state = 0;   // machine state (Bullet R1: 6 roasting, 8 cooling, ...)
  bool operator==(const Sample&) const = default;
};

// Who sent it: a device and a boot of it. Sequence numbers restart at every boot.
struct DeviceIdentity {
  std::string device;      // stable id, e.g. "r1-2048"
  std::uint64_t boot = 0;  // boot epoch (kiln's recorders: milliseconds) — distinguishes sequence
                           // runs; a later boot is a larger number
  bool operator==(const DeviceIdentity&) const = default;
};

// A batch of samples as signed: identity, a sequence number per batch, the device's send time.
struct Batch {
  DeviceIdentity device;
  std::uint64_t seq = 0;
  double sent_at = 0;  // device time of sending, seconds since the Unix epoch
  std::vector<Sample> samples;
  bool operator==(const Batch&) const = default;
};

namespace cbor {
// The CBOR (RFC 8949) an envelope's framing needs: a head (major type and argument, shortest
// form), and byte and text strings.
inline void head(std::string& out, int major, std::uint64_t v) {
  const auto m = static_cast<unsigned char>(major << 5);
  int bytes = 0;
  if (v < 24) {
    out += static_cast<char>(m | v);
    return;
  }
  if (v <= 0xFF) {
    out += static_cast<char>(m | 24);
    bytes = 1;
  } else if (v <= 0xFFFF) {
    out += static_cast<char>(m | 25);
    bytes = 2;
  } else if (v <= 0xFFFFFFFFull) {
    out += static_cast<char>(m | 26);
    bytes = 4;
  } else {
    out += static_cast<char>(m | 27);
    bytes = 8;
  }
  for (int s = 8 * (bytes - 1); s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}
inline void put_int(std::string& out, std::int64_t v) {
  if (v >= 0)
    head(out, 0, static_cast<std::uint64_t>(v));
  else
    head(out, 1, static_cast<std::uint64_t>(-1 - v));
}
inline void put_bytes(std::string& out, std::string_view b) {
  head(out, 2, b.size());
  out += b;
}
inline void put_text(std::string& out, std::string_view t) {
  head(out, 3, t.size());
  out += t;
}
}  // namespace cbor

// A signed envelope, the body of POST /v1/telemetry/{device} (application/cose): a tagged
// COSE_Sign1 (RFC 9052) — 18([protected, {}, payload, signature]) — whose protected header is
// {1: -8 (EdDSA), 4: kid}, whose payload is the CBOR of a Batch, and whose Ed25519 signature
// covers to_be_signed(tenant, stream): the tenant and the device's stream are bound into it
// (external AAD), so an envelope cannot be replayed into another tenant or stream.
// tests/fixtures/telemetry/test-vector.json (installed in share/kiln/telemetry) gives every byte
// for one key and batch.
struct Envelope {
  static constexpr std::uint64_t kCoseSign1Tag = 18;
  static constexpr std::int64_t kAlgEdDSA = -8;
  static constexpr std::size_t kSignatureBytes = 64;

  std::string protected_header;  // its CBOR bytes, exactly as signed
  std::string kid;               // the key id in it: kiln's are 16 lower-case hex digits
  std::string payload;           // the CBOR of the batch
  std::string signature;         // kSignatureBytes of Ed25519

  // An envelope for `payload` signed with key `kid` (the signature still to be set).
  static Envelope for_key(std::string kid, std::string payload) {
    Envelope e;
    cbor::head(e.protected_header, 5, 2);
    cbor::put_int(e.protected_header, 1);  // alg
    cbor::put_int(e.protected_header, kAlgEdDSA);
    cbor::put_int(e.protected_header, 4);  // kid
    cbor::put_bytes(e.protected_header, kid);
    e.kid = std::move(kid);
    e.payload = std::move(payload);
    return e;
  }
  // The external AAD: the CBOR array [tenant, stream] of two text strings.
  static std::string external_aad(std::string_view tenant, std::string_view stream) {
    std::string a;
    cbor::head(a, 4, 2);
    cbor::put_text(a, tenant);
    cbor::put_text(a, stream);
    return a;
  }
  // What the signature covers: the Sig_structure ["Signature1", protected, external_aad,
  // payload].
  std::string to_be_signed(std::string_view tenant, std::string_view stream) const {
    std::string s;
    cbor::head(s, 4, 4);
    cbor::put_text(s, "Signature1");
    cbor::put_bytes(s, protected_header);
    cbor::put_bytes(s, external_aad(tenant, stream));
    cbor::put_bytes(s, payload);
    return s;
  }
  // The envelope as sent; `signature` must be set (kSignatureBytes: the server refuses another
  // length as malformed).
  std::string encode() const {
    std::string out;
    cbor::head(out, 6, kCoseSign1Tag);
    cbor::head(out, 4, 4);
    cbor::put_bytes(out, protected_header);
    cbor::head(out, 5, 0);  // no unprotected header
    cbor::put_bytes(out, payload);
    cbor::put_bytes(out, signature);
    return out;
  }
};

}  // namespace kiln::telemetry
