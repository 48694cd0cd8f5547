// Reading a file named on the command line, with an error that says what was wrong with it.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <unistd.h>

#include "common/files.hpp"

namespace kiln::cli {

// The largest file read: a fifteen-minute roast log is ≈ 200 KB.
inline constexpr std::size_t kMaxInputFile = 64 * 1024 * 1024;

// The whole file; throws std::runtime_error naming the file and the reason (missing, a
// directory, unreadable, empty, over kMaxInputFile — /dev/zero too). `what` says what the file
// should have been ("an Artisan .alog").
inline std::string read_input_file(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) throw std::runtime_error(path + ": no such file");
  if (st.type() == fs::file_type::directory)
    throw std::runtime_error(path + " is a directory, not " + what);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::string out;
  char chunk[65536];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    out.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (out.size() > kMaxInputFile)
      throw std::runtime_error(path + " is larger than " +
                               std::to_string(kMaxInputFile / (1024 * 1024)) + " MiB; not " + what +
                               "?");
  }
  if (in.bad()) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  if (out.empty()) throw std::runtime_error(path + " is empty, not " + what);
  return out;
}

// Writes `bytes` to `path` (creating its directory, replacing the file); throws
// std::runtime_error naming the file when it cannot.
inline void write_output_file(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

// Where an export's lines go: `file` when given — mode 0640, as the database whose contents it
// holds (API key hashes among them), never written through a link, and whole or not at all (into
// FILE.partial, renamed over FILE by finish(): an export that fails half way, or a server that
// refuses it, leaves the file there before as it was) — else `out`.
class ExportOutput {
 public:
  ExportOutput(const std::optional<std::string>& file, std::ostream& out) : out_(out) {
    if (!file) return;
    path_ = *file;
    std::error_code ec;
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(path_, ec)))
      throw std::runtime_error("cannot write " + path_ +
                               ": it is a symbolic link (name the file itself)");
    const int fd = common::open_output_file(partial(), 0640);
    file_.reset(::fdopen(fd, "w"));
    if (!file_) {
      const int e = errno;
      ::close(fd);
      ::unlink(partial().c_str());
      throw std::runtime_error("cannot write " + *file + ": " + std::strerror(e));
    }
  }
  ~ExportOutput() {
    if (file_ && !finished_) ::unlink(partial().c_str());
  }
  ExportOutput(const ExportOutput&) = delete;
  ExportOutput& operator=(const ExportOutput&) = delete;
  void write(std::string_view line) {
    if (file_)
      std::fwrite(line.data(), 1, line.size(), file_.get());
    else
      out_ << line;
  }
  // Throws when a write failed (a full disk); the file is then left as it was.
  void finish() {
    // Synced before its name is given: a backup is whole after a power cut too.
    const bool written = file_ ? std::fflush(file_.get()) == 0 && !std::ferror(file_.get()) &&
                                     ::fsync(::fileno(file_.get())) == 0
                               : !!out_.flush();
    if (!written) throw std::runtime_error("writing the export failed (disk full?)");
    if (!file_) return;
    if (::rename(partial().c_str(), path_.c_str()) != 0)
      throw std::runtime_error("cannot put the export at " + path_ + ": " + std::strerror(errno));
    finished_ = true;
  }

 private:
  std::string partial() const { return path_ + ".partial"; }
  std::ostream& out_;
  std::string path_;
  bool finished_ = false;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
};

}  // namespace kiln::cli
