#include "common/files.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/sha256.hpp"

namespace kiln::common {

namespace {

std::runtime_error failed(const std::string& what, const std::filesystem::path& file) {
  return std::runtime_error("cannot " + what + " " + file.string() + ": " + std::strerror(errno));
}

void write_all(int fd, std::string_view bytes, const std::filesystem::path& file) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw failed("write", file);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// `bytes` in a new temporary file beside `file`, synced; returns its name.
std::string synced_temporary(const std::filesystem::path& file, std::string_view bytes,
                             mode_t mode) {
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  ensure_sodium();
  const std::string tmp = file.string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                          std::to_string(randombytes_uniform(1000000000));
  const int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw failed("create", tmp);
  try {
    if (::fchmod(fd, mode) != 0) throw failed("set the mode of", tmp);
    write_all(fd, bytes, tmp);
    if (::fsync(fd) != 0) throw failed("sync", tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  return tmp;
}

std::filesystem::path directory_of(const std::filesystem::path& file) {
  return file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
}

}  // namespace

void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw failed("open the directory", dir);
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  errno = e;
  if (rc != 0) throw failed("sync the directory", dir);
}

void replace_file(const std::filesystem::path& file, std::string_view bytes, mode_t mode) {
  const std::string tmp = synced_temporary(file, bytes, mode);
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const auto error = failed("write", file);
    ::unlink(tmp.c_str());
    throw error;
  }
  sync_directory(directory_of(file));
}

void name_new_file(const std::filesystem::path& from, const std::filesystem::path& to) {
  const auto exists = [&] {
    return std::runtime_error(to.string() + " exists; it is never overwritten");
  };
  if (::link(from.c_str(), to.c_str()) == 0) {
    ::unlink(from.c_str());
  } else if (errno == EEXIST) {
    throw exists();
  } else if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) throw exists();
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) throw failed("create", to);
    std::error_code ec;
    if (std::filesystem::exists(to, ec)) throw exists();
    if (::rename(from.c_str(), to.c_str()) != 0) throw failed("create", to);
  }
  sync_directory(directory_of(to));
}

void write_new_file(const std::filesystem::path& file, std::string_view bytes, mode_t mode) {
  const std::string tmp = synced_temporary(file, bytes, mode);
  try {
    name_new_file(tmp, file);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

int open_output_file(const std::filesystem::path& file, mode_t mode) {
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  const int fd = ::open(file.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == ELOOP)
      throw std::runtime_error("cannot write " + file.string() +
                               ": it is a symbolic link (name the file itself)");
    throw failed("write", file);
  }
  if (::fchmod(fd, mode) != 0) {
    ::close(fd);
    throw failed("set the mode of", file);
  }
  return fd;
}

}  // namespace kiln::common
