// Client mode (--server URL / KILN_SERVER_URL, --api-key / KILN_API_KEY): see remote.cpp.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "cli/args.hpp"

namespace kiln::cli {

// The server a command talks to: --server / KILN_SERVER_URL (empty: none, run locally) and
// --api-key / KILN_API_KEY.
struct ServerTarget {
  std::string url;
  std::string key;
};
ServerTarget server_target(const Args& a);

// Percent-encodes a path segment or query value.
std::string url_encode(const std::string& s);

// The audio format of `kiln say`: --format, else the -o file's extension, else wav.
std::string say_format(const Args& a);

// Whether command `name` talks to the server when one is given (client mode); the others run
// against the local deployment whatever KILN_SERVER_URL says — and refuse --server.
bool client_mode(const std::string& name);

// Runs command `name` against the server when one is given; nullopt when none is.

std::optional<int> run_remote(const std::string& name, const Args& a, std::ostream& out,
                              std::ostream& err);

}  // namespace kiln::cli
