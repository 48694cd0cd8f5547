#include "common/sha256.hpp"

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <sodium.h>

namespace kiln::common {
namespace {

std::string to_hex(const unsigned char* digest) {
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, crypto_hash_sha256_BYTES);
  return std::string(hex);
}

}  // namespace

void ensure_sodium() {
  // sodium_init is idempotent and thread-safe, but takes a global lock on every call; the hashes
  // on the request path (API keys, the ledger chain) only need it once per process.
  static const bool ok = sodium_init() >= 0;
  if (!ok) throw std::runtime_error("libsodium failed to initialise");
}

std::string sha256_file(const std::filesystem::path& path) {
  ensure_sodium();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path.string() + "': " + std::strerror(errno));
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = in.gcount();
    if (n > 0)
      crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(buf.data()),
                                static_cast<unsigned long long>(n));
  }
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&st, digest);
  return to_hex(digest);
}

std::string sha256_hex(std::string_view data) {
  ensure_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return to_hex(digest);
}

}  // namespace kiln::common
