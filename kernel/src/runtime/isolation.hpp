// Isolated execution: a plugin's tools run in a child `kiln node-host` process, reached over a
// socketpair with length-prefixed JSON frames. A crash, abort or hang in the child fails only
// that call, with a typed error; the child is restarted with backoff (1, 2, 4, 8 s).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <sys/types.h>

#include <boost/json.hpp>

#include "kiln/tool.hpp"

namespace kiln::runtime {

// Frames: a 4-byte big-endian length, then that many bytes of JSON.
inline constexpr std::size_t kMaxFrame = 64u << 20;
bool write_frame(int fd, const std::string& payload);
// nullopt on EOF or error; `deadline` bounds the wait (nullopt: wait forever).
std::optional<std::string> read_frame(int fd,
                                      std::optional<std::chrono::steady_clock::time_point> deadline,
                                      bool* timed_out);

// The child's side: read the plugin config and artifact directory (the first frame:
// {"plugin_config", "artifacts"}), then serve calls for one plugin's
// tools on `fd` until EOF or until the parent process is gone. Returns an exit code.
int run_node_host(int fd, const std::filesystem::path& plugin);

// The parent's side: one child process serving one plugin.
class NodeHost {
 public:
  // `artifacts`: the plugin's artifact directory (HostServices::artifact_dir in the child).
  NodeHost(std::filesystem::path kiln_exe, std::filesystem::path plugin, std::string plugin_name,
           boost::json::object plugin_config, std::filesystem::path artifacts);
  ~NodeHost();
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // One call at a time per child. Never throws.
  ToolOutcome call(const std::string& tool, const boost::json::value& input,
                   const ToolContext& ctx);
  pid_t pid() const;
  int restarts() const;

 private:
  bool ensure_started(std::string* why);
  // Reaps the child (killing it if needed) and schedules the next start; returns how it ended.
  std::string reap(bool kill_first);

  mutable std::timed_mutex mu_;
  std::filesystem::path exe_;
  std::filesystem::path plugin_;
  std::string plugin_name_;
  std::string plugin_config_text_;
  pid_t pid_ = -1;
  int fd_ = -1;
  int consecutive_failures_ = 0;
  int starts_ = 0;
  std::chrono::steady_clock::time_point next_start_{};
  std::uint64_t next_id_ = 1;
};

// A Tool that forwards to a NodeHost.
class IsolatedTool final : public Tool {
 public:
  IsolatedTool(std::shared_ptr<NodeHost> host, std::string name)
      : host_(std::move(host)), name_(std::move(name)) {}
  ToolOutcome invoke(const boost::json::value& input, const ToolContext& ctx) override {
    return host_->call(name_, input, ctx);
  }

 private:
  std::shared_ptr<NodeHost> host_;
  std::string name_;
};

}  // namespace kiln::runtime
