// SHA-256 of files and strings (OpenSSL libcrypto), as lowercase hex.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::common {

// Throws std::runtime_error naming the file if it cannot be read.
std::string sha256_file(const std::filesystem::path& path);
std::string sha256_hex(std::string_view data);
// Initialises libsodium (Ed25519 signatures) once per process: sodium_init takes a global lock
// on every call. Throws std::runtime_error if it cannot.
void ensure_sodium();

}  // namespace kiln::common
