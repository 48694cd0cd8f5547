// Test support: run the real kiln binary as a child process and capture what it prints.
#pragma once

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace kiln::test {

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out;
  std::string err;
  double seconds = 0;
};

// A child process with its stdout and stderr captured. Environment: the parent's with every
// KILN_* variable and a service manager's (NOTIFY_SOCKET, WATCHDOG_*) removed, plus `env`.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
        const std::filesystem::path& cwd = {}) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> envs;
    for (char** e = environ; e && *e; ++e)
      if (std::strncmp(*e, "KILN_", 5) != 0 && std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 &&
          std::strncmp(*e, "WATCHDOG_", 9) != 0)
        envs.emplace_back(*e);
    for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
    start_ = std::chrono::steady_clock::now();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]);
      close(err[0]);
      close(out[1]);
      close(err[1]);
      if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
      std::vector<char*> a, e;
      for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      for (const auto& s : envs) e.push_back(const_cast<char*>(s.c_str()));
      e.push_back(nullptr);
      execve(a[0], a.data(), e.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
    if (err_fd_ >= 0) close(err_fd_);
  }

  // Reads output until `needle` appears in stderr or `timeout` passes; true if it appeared.
  bool wait_for_stderr(const std::string& needle, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (result_.err.find(needle) != std::string::npos) return true;
      if (!pump(50)) break;
    }
    return result_.err.find(needle) != std::string::npos;
  }

  pid_t pid() const { return pid_; }
  bool reaped() const { return reaped_; }
  void signal(int sig) { kill(pid_, sig); }
  const std::string& stderr_so_far() const { return result_.err; }

  // Waits for exit (killing the child after `timeout`) and returns everything it printed.
  RunResult wait(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    bool timed_out = false;
    while (pump(50)) {
      if (std::chrono::steady_clock::now() > until) {
        timed_out = true;
        kill(pid_, SIGKILL);
      }
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    result_.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    result_.exit_code = (!timed_out && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    return result_;
  }

 private:
  // Reads whatever is ready; false once both pipes are closed.
  bool pump(int timeout_ms) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    int open_fds = (out_fd_ >= 0) + (err_fd_ >= 0);
    if (open_fds == 0) return false;
    poll(fds, 2, timeout_ms);
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      int& fd = i == 0 ? out_fd_ : err_fd_;
      if (fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fd, buf, sizeof buf);
      if (n > 0)
        (i == 0 ? result_.out : result_.err).append(buf, static_cast<std::size_t>(n));
      else {
        close(fd);
        fd = -1;
      }
    }
    return out_fd_ >= 0 || err_fd_ >= 0;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  bool reaped_ = false;
  RunResult result_;
  std::chrono::steady_clock::time_point start_;
};

// Ends a server as a service manager does (SIGTERM) and waits up to `timeout`: nullopt when it
// exited 0, else what went wrong with the end of what it printed.
inline std::optional<std::string> stop_cleanly(
    Child& c, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  c.signal(SIGTERM);
  const auto r = c.wait(timeout);
  if (r.exit_code == 0) return std::nullopt;
  return "kiln serve did not stop cleanly on SIGTERM (exit " + std::to_string(r.exit_code) +
         "); its last output: " + r.err.substr(r.err.size() > 2000 ? r.err.size() - 2000 : 0);
}

inline RunResult run(const std::vector<std::string>& argv,
                     const std::map<std::string, std::string>& env = {},
                     const std::filesystem::path& cwd = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  Child c(argv, env, cwd);
  return c.wait(timeout);
}

// A fresh directory under the system temp dir, removed when the object goes.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace kiln::test
