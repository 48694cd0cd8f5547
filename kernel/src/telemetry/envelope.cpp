#include "telemetry/envelope.hpp"

#include "common/sha256.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

namespace kiln::telemetry {

namespace {

// ---- CBOR (RFC 8949): the subset COSE and the batch need -----------------------------------

// Heads and strings as the SDK's envelope writes them (kiln/telemetry.hpp).
using cbor::head;
using cbor::put_bytes;
using cbor::put_int;
using cbor::put_text;
void put_double(std::string& out, double d) {
  std::uint64_t bits;
  std::memcpy(&bits, &d, 8);
  out += static_cast<char>(0xFB);
  for (int s = 56; s >= 0; s -= 8) out += static_cast<char>((bits >> s) & 0xFF);
}

struct Item {
  enum Type { kUInt, kNInt, kBytes, kText, kArray, kMap, kTag, kFloat, kSimple } type = kUInt;
  std::uint64_t u = 0;  // uint value, -1-n for nint, tag number, simple value
  double d = 0;
  std::string s;            // bytes or text
  std::vector<Item> items;  // array items; map as key, value, key, value...; tag content
  bool is_int() const { return type == kUInt || type == kNInt; }
  std::int64_t as_int() const {
    return type == kUInt ? static_cast<std::int64_t>(u) : -1 - static_cast<std::int64_t>(u);
  }
  bool is_number() const { return is_int() || type == kFloat; }
  double as_number() const { return type == kFloat ? d : static_cast<double>(as_int()); }
  const Item* get(std::string_view key) const {
    for (std::size_t i = 0; i + 1 < items.size(); i += 2)
      if (items[i].type == kText && items[i].s == key) return &items[i + 1];
    return nullptr;
  }
  const Item* get(std::int64_t key) const {
    for (std::size_t i = 0; i + 1 < items.size(); i += 2)
      if (items[i].is_int() && items[i].as_int() == key) return &items[i + 1];
    return nullptr;
  }
};

// CBOR half-precision float (RFC 8949 appendix D).
double half(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  double v = exp == 0    ? std::ldexp(mant, -24)
             : exp != 31 ? std::ldexp(mant + 1024, exp - 25)
                         : (mant == 0 ? INFINITY : NAN);
  return (h & 0x8000) ? -v : v;
}

// Bytes of CBOR input, read front to back; running out is an error ("truncated").
class Input {
 protected:
  explicit Input(std::string_view in) : in_(in) {}
  unsigned char byte() {
    if (pos_ >= in_.size()) throw std::runtime_error("truncated");
    return static_cast<unsigned char>(in_[pos_++]);
  }
  std::uint64_t arg(int n) {
    std::uint64_t v = 0;
    for (int k = 0; k < n; ++k) v = (v << 8) | byte();
    return v;
  }
  std::string_view in_;
  std::size_t pos_ = 0;
};

class Decoder : Input {
 public:
  explicit Decoder(std::string_view in) : Input(in) {}
  Item item(int depth = 0) {
    if (depth > 16) throw std::runtime_error("nested deeper than 16");
    const auto b = byte();
    const int major = b >> 5, info = b & 31;
    Item it;
    if (major == 7) {
      if (info == 25) return flt(half(static_cast<std::uint16_t>(arg(2))));
      if (info == 26) {
        auto bits = static_cast<std::uint32_t>(arg(4));
        float f;
        std::memcpy(&f, &bits, 4);
        return flt(f);
      }
      if (info == 27) {
        std::uint64_t bits = arg(8);
        double d;
        std::memcpy(&d, &bits, 8);
        return flt(d);
      }
      if (info < 24) {
        it.type = Item::kSimple;
        it.u = static_cast<std::uint64_t>(info);
        return it;
      }
      throw std::runtime_error("unsupported simple value");
    }
    std::uint64_t v;
    if (info < 24)
      v = static_cast<std::uint64_t>(info);
    else if (info == 24)
      v = arg(1);
    else if (info == 25)
      v = arg(2);
    else if (info == 26)
      v = arg(4);
    else if (info == 27)
      v = arg(8);
    else
      throw std::runtime_error("indefinite lengths are not supported");
    switch (major) {
      case 0:
        it.type = Item::kUInt;
        it.u = v;
        return it;
      case 1:
        it.type = Item::kNInt;
        it.u = v;
        return it;
      case 2:
      case 3:
        if (v > in_.size() - pos_) throw std::runtime_error("string longer than the input");
        it.type = major == 2 ? Item::kBytes : Item::kText;
        it.s = std::string(in_.substr(pos_, static_cast<std::size_t>(v)));
        pos_ += static_cast<std::size_t>(v);
        return it;
      case 4:
      case 5: {
        const std::uint64_t n = major == 4 ? v : v * 2;
        if (n > in_.size() - pos_) throw std::runtime_error("container longer than the input");
        it.type = major == 4 ? Item::kArray : Item::kMap;
        it.items.reserve(static_cast<std::size_t>(n));  // n is bounded by the input's size
        for (std::uint64_t k = 0; k < n; ++k) it.items.push_back(item(depth + 1));
        return it;
      }
      case 6:
        it.type = Item::kTag;
        it.u = v;
        it.items.push_back(item(depth + 1));
        return it;
    }
    throw std::runtime_error("bad major type");
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  static Item flt(double d) {
    Item it;
    it.type = Item::kFloat;
    it.d = d;
    return it;
  }
};

// Walks CBOR without building a tree: the batch's samples are decoded straight into Sample
// values (the tree of Items cost ≈ 15 µs an envelope in allocations, a sixth of a verify).
// Same limits and messages as Decoder.
class Cursor : Input {
 public:
  explicit Cursor(std::string_view in) : Input(in) {}
  struct Head {
    int major = 0;
    int info = 0;
    std::uint64_t v = 0;  // the argument; for major 7 the raw bits of a float
  };
  Head head() {
    const auto b = byte();
    Head h{b >> 5, b & 31, 0};
    if (h.info < 24) {
      h.v = static_cast<std::uint64_t>(h.info);
    } else if (h.info <= 27) {
      h.v = arg(1 << (h.info - 24));
    } else {
      throw std::runtime_error(h.major == 7 ? "unsupported simple value"
                                            : "indefinite lengths are not supported");
    }
    if (h.major == 7 && h.info == 24) throw std::runtime_error("unsupported simple value");
    if ((h.major == 4 || h.major == 5) && h.v > (in_.size() - pos_) / (h.major == 5 ? 2 : 1))
      throw std::runtime_error("container longer than the input");
    if ((h.major == 2 || h.major == 3) && h.v > in_.size() - pos_)
      throw std::runtime_error("string longer than the input");
    return h;
  }
  // The bytes of a string whose head was just read.
  std::string_view take(const Head& h) {
    auto out = in_.substr(pos_, static_cast<std::size_t>(h.v));
    pos_ += static_cast<std::size_t>(h.v);
    return out;
  }
  // Skips the rest of an item whose head was just read.
  void skip(const Head& h, int depth) {
    if (depth > 16) throw std::runtime_error("nested deeper than 16");
    switch (h.major) {
      case 2:
      case 3:
        take(h);
        return;
      case 4:
      case 5: {
        const std::uint64_t n = h.major == 4 ? h.v : h.v * 2;
        for (std::uint64_t k = 0; k < n; ++k) skip(head(), depth + 1);
        return;
      }
      case 6:
        skip(head(), depth + 1);
        return;
      default:
        return;
    }
  }
  // The span of one whole item, from here.
  std::string_view item(int depth) {
    const auto start = pos_;
    skip(head(), depth);
    return in_.substr(start, pos_ - start);
  }
  // A number item (integer or float) as a double.
  static std::optional<double> number(const Head& h) {
    if (h.major == 0) return static_cast<double>(h.v);
    if (h.major == 1) return -1.0 - static_cast<double>(h.v);
    if (h.major != 7) return std::nullopt;
    if (h.info == 25) return half(static_cast<std::uint16_t>(h.v));
    if (h.info == 26) {
      auto bits = static_cast<std::uint32_t>(h.v);
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    if (h.info == 27) {
      double d;
      std::memcpy(&d, &h.v, 8);
      return d;
    }
    return std::nullopt;  // a simple value
  }
};

// The values of a CBOR map's text keys among `names` (the first of a repeated key), as spans.
template <std::size_t N>
std::array<std::string_view, N> map_fields(Cursor& c, const Cursor::Head& map, int depth,
                                           const std::array<std::string_view, N>& names,
                                           std::vector<std::string>* ignored = nullptr,
                                           std::string_view where = {}) {
  std::array<std::string_view, N> out{};
  std::array<bool, N> seen{};
  // Keys skipped, named for the answer (a misspelt optional key is otherwise lost without a
  // word): each once, at most 8.
  auto skipped = [&](std::string name) {
    if (!ignored || ignored->size() >= 8) return;
    name = std::string(where) + name;
    if (std::find(ignored->begin(), ignored->end(), name) == ignored->end())
      ignored->push_back(std::move(name));
  };
  for (std::uint64_t k = 0; k < map.v; ++k) {
    const auto key = c.head();
    std::size_t which = N;
    if (key.major == 3) {
      const auto text = c.take(key);
      bool repeated = false;
      for (std::size_t i = 0; i < N; ++i)
        if (names[i] == text) {
          if (seen[i])
            repeated = true;
          else
            which = i;
        }
      if (which == N) skipped(printable(text) + (repeated ? " (repeated: the first counts)" : ""));
    } else {
      c.skip(key, depth + 1);
      skipped("(a key that is not text)");
    }
    const auto value = c.item(depth + 1);
    if (which < N) {
      out[which] = value;
      seen[which] = true;
    }
  }
  return out;
}

}  // namespace

KeyPair generate_key(std::string kid) {
  common::ensure_sodium();
  KeyPair k;
  k.kid = std::move(kid);
  crypto_sign_keypair(k.pub.data(), k.secret.data());
  return k;
}

std::string encode_batch(const Batch& b) {
  std::string out;
  head(out, 5, 5);
  put_text(out, "device");
  put_text(out, b.device.device);
  put_text(out, "boot");
  head(out, 0, b.device.boot);
  put_text(out, "seq");
  head(out, 0, b.seq);
  put_text(out, "sent_at");
  put_double(out, b.sent_at);
  put_text(out, "samples");
  head(out, 4, b.samples.size());
  for (const auto& s : b.samples) {
    head(out, 5, 8);
    put_text(out, "t");
    put_double(out, s.t);
    put_text(out, "bt");
    put_double(out, s.bt);
    put_text(out, "et");
    put_double(out, s.et);
    put_text(out, "ror");
    put_double(out, s.ror);
    put_text(out, "heater");
    put_int(out, s.heater);
    put_text(out, "fan");
    put_int(out, s.fan);
    put_text(out, "drum");
    put_int(out, s.drum);
    put_text(out, "state");
    put_int(out, s.state);
  }
  return out;
}

std::string sign_envelope(const Batch& b, const KeyPair& key, std::string_view tenant,
                          std::string_view stream) {
  return sign_payload(encode_batch(b), key, tenant, stream);
}

std::string sign_payload(std::string_view payload, const KeyPair& key, std::string_view tenant,
                         std::string_view stream) {
  common::ensure_sodium();
  auto e = Envelope::for_key(key.kid, std::string(payload));
  const std::string tbs = e.to_be_signed(tenant, stream);
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size(),
                       key.secret.data());
  e.signature.assign(reinterpret_cast<const char*>(sig), sizeof sig);
  return e.encode();
}

namespace detail {

std::optional<Parsed> parse_envelope(std::string_view envelope, std::string_view tenant,
                                     std::string_view stream, EnvelopeError* error) {
  auto bad = [&](std::string reason, std::string message) {
    *error = {std::move(reason), std::move(message)};
    return std::nullopt;
  };
  try {
    Decoder d(envelope);
    Item top = d.item();
    // Bytes after the first CBOR item: trailing bytes after a COSE_Sign1, or no COSE_Sign1 at
    // all (random bytes parse as a small item and a rest) — said as whichever it is.
    const bool trailing = !d.done();
    if (top.type == Item::kTag) {
      if (top.u != 18)
        return bad("malformed", "CBOR tag " + std::to_string(top.u) + ", expected 18 (COSE_Sign1)");
      Item inner = std::move(top.items.front());
      top = std::move(inner);
    }
    if (top.type != Item::kArray || top.items.size() != 4 || top.items[0].type != Item::kBytes ||
        top.items[1].type != Item::kMap || top.items[2].type != Item::kBytes ||
        top.items[3].type != Item::kBytes)
      return bad("malformed",
                 "not a COSE_Sign1 array [protected, unprotected, payload, signature]" +
                     std::string(trailing ? " (the body is not one CBOR item)" : ""));
    if (trailing) return bad("malformed", "bytes after the COSE_Sign1 structure");
    Decoder hd(top.items[0].s);
    Item prot = hd.item();
    if (prot.type != Item::kMap) return bad("malformed", "the protected header is not a map");
    const Item* alg = prot.get(1);
    if (!alg || !alg->is_int() || alg->as_int() != -8)
      return bad("unsupported_alg", "the protected header must say alg EdDSA (-8)");
    const Item* kid = prot.get(4);
    if (!kid || (kid->type != Item::kBytes && kid->type != Item::kText) || kid->s.empty())
      return bad("malformed", "the protected header has no key id (4)");
    if (top.items[3].s.size() != crypto_sign_BYTES)
      return bad("malformed", "an Ed25519 signature is 64 bytes, this one " +
                                  std::to_string(top.items[3].s.size()));
    Parsed p;
    // A key id names a key; it is not a place for data (it reaches messages and the ledger).
    if (kid->s.size() > kMaxKeyIdBytes)
      return bad("malformed", "the key id (protected header 4) has " +
                                  std::to_string(kid->s.size()) + " bytes; at most " +
                                  std::to_string(kMaxKeyIdBytes) + " are accepted");
    p.kid = kid->s;
    p.protected_header = std::move(top.items[0].s);
    p.payload = std::move(top.items[2].s);
    p.signature = std::move(top.items[3].s);
    p.signed_bytes = p.to_be_signed(tenant, stream);
    return p;
  } catch (const std::exception& e) {
    return bad("malformed", std::string("not valid CBOR: ") + e.what());
  }
}

bool verify(const Parsed& p, const PublicKey& key) {
  common::ensure_sodium();
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(p.signature.data()),
                                     reinterpret_cast<const unsigned char*>(p.signed_bytes.data()),
                                     p.signed_bytes.size(), key.data()) == 0;
}

std::optional<Batch> decode_batch(std::string_view cbor, EnvelopeError* error,
                                  std::vector<std::string>* ignored) {
  auto bad = [&](const std::string& message) {
    *error = {"bad_payload", message};
    return std::nullopt;
  };
  try {
    Cursor c(cbor);
    const auto top = c.head();
    if (top.major != 5) return bad("the payload is not a CBOR map");
    static constexpr std::array<std::string_view, 5> kFields{"device", "boot", "seq", "sent_at",
                                                             "samples"};
    const auto f = map_fields(c, top, 0, kFields, ignored, "payload.");
    // Each field's span holds one whole item: its head tells the type.
    auto head_of = [](std::string_view span, Cursor::Head* h) -> Cursor {
      Cursor sub(span);
      if (!span.empty()) *h = sub.head();
      return sub;
    };
    Cursor::Head dev, boot, seq, sent, samples;
    Cursor dev_c = head_of(f[0], &dev);
    head_of(f[1], &boot);
    head_of(f[2], &seq);
    head_of(f[3], &sent);
    Cursor samples_c = head_of(f[4], &samples);
    if (f[0].empty() || dev.major != 3 || dev.v == 0) return bad("payload.device must be text");
    if (f[1].empty() || boot.major != 0) return bad("payload.boot must be an unsigned integer");
    if (f[2].empty() || seq.major != 0) return bad("payload.seq must be an unsigned integer");
    const auto sent_at = f[3].empty() ? std::nullopt : Cursor::number(sent);
    if (!sent_at) return bad("payload.sent_at must be a number");
    if (!std::isfinite(*sent_at))
      return bad(
          "payload.sent_at is not finite (NaN or infinity); it is the device's clock in "
          "Unix seconds");
    if (f[4].empty() || samples.major != 4) return bad("payload.samples must be an array");
    Batch b;
    b.device = {std::string(dev_c.take(dev)), boot.v};
    b.seq = seq.v;
    b.sent_at = *sent_at;
    // A sample takes at least 12 bytes (a map of t, bt and et): no larger reservation than the
    // input can fill.
    b.samples.reserve(std::min(static_cast<std::size_t>(samples.v), f[4].size() / 12));
    static constexpr std::array<std::string_view, 8> kSample{"t",      "bt",  "et",   "ror",
                                                             "heater", "fan", "drum", "state"};
    for (std::uint64_t i = 0; i < samples.v; ++i) {
      const auto m = samples_c.head();
      if (m.major != 5) return bad("each sample must be a map");
      const auto v = map_fields(samples_c, m, 2, kSample, ignored, "payload.samples[].");
      Sample x;
      bool not_finite = false;
      auto num = [&](std::size_t k, double* out) {
        if (v[k].empty()) return false;
        Cursor::Head h;
        head_of(v[k], &h);
        auto d = Cursor::number(h);
        if (!d) return false;
        *out = *d;
        not_finite = not_finite || !std::isfinite(*out);
        return std::isfinite(*out);
      };
      auto integer = [&](std::size_t k, int* out) {
        if (v[k].empty()) return true;  // settings are optional
        Cursor::Head h;
        head_of(v[k], &h);
        // Levels and states are small integers: anything outside int is refused, not wrapped.
        constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<int>::max());
        if (h.major == 0 && h.v <= kMax)
          *out = static_cast<int>(h.v);
        else if (h.major == 1 && h.v <= kMax)  // down to -1 - INT_MAX = INT_MIN
          *out = -1 - static_cast<int>(h.v);
        else
          return false;
        return true;
      };
      if (!num(0, &x.t) || !num(1, &x.bt) || !num(2, &x.et)) {
        if (not_finite) {  // a number, but NaN or infinite: a bad reading, not a bad payload
          *error = {"bad_samples", "sample " + std::to_string(b.samples.size()) +
                                       " has a t, bt or et that is not finite (NaN or infinity)"};
          return std::nullopt;
        }
        return bad("sample " + std::to_string(b.samples.size()) + " needs numbers t, bt and et");
      }
      const std::string which = "sample " + std::to_string(b.samples.size());
      if (!v[3].empty() && !num(3, &x.ror)) {
        // A device has no RoR until it has readings enough, and may say so with NaN: none.
        if (!not_finite) return bad(which + ": ror must be a number (°C/min)");
        x.ror = 0;
      }
      int* settings[] = {&x.heater, &x.fan, &x.drum, &x.state};
      for (std::size_t k = 4; k < 8; ++k)
        if (!integer(k, settings[k - 4]))
          return bad(which + ": " + std::string(kSample[k]) +
                     " must be an integer from -2147483648 to 2147483647 (the level or state as "
                     "the machine reports it)");
      b.samples.push_back(x);
    }
    return b;
  } catch (const std::exception& e) {
    return bad(std::string("the payload is not valid CBOR: ") + e.what());
  }
}

}  // namespace detail

}  // namespace kiln::telemetry
