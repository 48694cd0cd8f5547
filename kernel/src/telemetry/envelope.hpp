// Signed telemetry envelopes: COSE_Sign1 (RFC 9052) with Ed25519 (libsodium) over a CBOR
// (RFC 8949) payload holding a telemetry::Batch. The key id is in the protected header; tenant
// and stream are bound as external AAD, so an envelope cannot be replayed into another stream.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/telemetry.hpp"

namespace kiln::telemetry {

using PublicKey = std::array<unsigned char, 32>;
using SecretKey = std::array<unsigned char, 64>;  // libsodium's seed || public key

struct KeyPair {
  std::string kid;
  PublicKey pub{};
  SecretKey secret{};
};

// The longest key id an envelope may carry (a name for a key, not a place for data).
inline constexpr std::size_t kMaxKeyIdBytes = 64;

// A fresh Ed25519 key pair.
KeyPair generate_key(std::string kid);

// CBOR of the batch: {"device", "boot", "seq", "sent_at", "samples": [{"t","bt","et","ror",
// "heater","fan","drum","state"}...]}.
std::string encode_batch(const Batch& b);

// Tagged COSE_Sign1: 18([protected {1: -8, 4: kid}, {}, payload, signature]).
std::string sign_envelope(const Batch& b, const KeyPair& key, std::string_view tenant,
                          std::string_view stream);
// The same around a payload already encoded (another encoder's CBOR, in tests and tools).
std::string sign_payload(std::string_view payload, const KeyPair& key, std::string_view tenant,
                         std::string_view stream);

// Why an envelope was refused; `reason` is a stable code for metrics and the ledger.
struct EnvelopeError {
  std::string reason;   // "malformed" | "unsupported_alg" | "unknown_key" | "bad_signature" |
                        // "bad_payload" | "bad_samples" (a reading that is NaN or infinite)
  std::string message;  // what was wrong, for a person
};

struct Opened {
  std::string kid;
  Batch batch;
};

// Decodes and verifies. `find_key(kid)` returns the public key for a key id, or nullopt.
template <class KeyLookup>
std::optional<Opened> open_envelope(std::string_view envelope, std::string_view tenant,
                                    std::string_view stream, KeyLookup&& find_key,
                                    EnvelopeError* error);

// At most 64 characters of `s`, printable ASCII kept and every other byte as \xNN: what an
// untrusted field may show of itself in a message or a ledger event (ingest.cpp).
std::string printable(std::string_view s);

namespace detail {
// The key-independent part of open_envelope: decodes, returns the kid and the data to verify.
struct Parsed : Envelope {
  std::string signed_bytes;  // to_be_signed(tenant, stream), made once
};
std::optional<Parsed> parse_envelope(std::string_view envelope, std::string_view tenant,
                                     std::string_view stream, EnvelopeError* error);
bool verify(const Parsed& p, const PublicKey& key);
// `ignored`, when given, gets the keys skipped as unknown or repeated ("payload.samples[].heat"),
// at most 8.
std::optional<Batch> decode_batch(std::string_view cbor, EnvelopeError* error,
                                  std::vector<std::string>* ignored = nullptr);
}  // namespace detail

template <class KeyLookup>
std::optional<Opened> open_envelope(std::string_view envelope, std::string_view tenant,
                                    std::string_view stream, KeyLookup&& find_key,
                                    EnvelopeError* error) {
  auto p = detail::parse_envelope(envelope, tenant, stream, error);
  if (!p) return std::nullopt;
  std::optional<PublicKey> key = find_key(p->kid);
  if (!key) {
    *error = {"unknown_key", "no device key with id '" + p->kid + "' (unknown or revoked)"};
    return std::nullopt;
  }
  if (!detail::verify(*p, *key)) {
    *error = {"bad_signature",
              "the signature does not verify with key '" + p->kid + "' for this tenant and stream"};
    return std::nullopt;
  }
  auto batch = detail::decode_batch(p->payload, error);
  if (!batch) return std::nullopt;
  return Opened{p->kid, std::move(*batch)};
}

}  // namespace kiln::telemetry
