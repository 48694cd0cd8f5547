// Reading a file named on the command line, with an error that says what was wrong with it.
#pragma once

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace kiln::cli {

// The whole file; throws std::runtime_error naming the file and the reason (missing, a
// directory, unreadable, empty). `what` says what the file should have been ("an Artisan .alog").
inline std::string read_input_file(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) throw std::runtime_error(path + ": no such file");
  if (st.type() == fs::file_type::directory)
    throw std::runtime_error(path + " is a directory, not " + what);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::string out = text.str();
  if (out.empty()) throw std::runtime_error(path + " is empty, not " + what);
  return out;
}

}  // namespace kiln::cli
