#include "runtime/isolation.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>

#include <fcntl.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "plugins/loader.hpp"
#include "runtime/json_schema.hpp"

namespace kiln::runtime {
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

bool write_frame(int fd, const std::string& payload) {
  if (payload.size() > kMaxFrame) return false;
  unsigned char head[4] = {static_cast<unsigned char>(payload.size() >> 24),
                           static_cast<unsigned char>(payload.size() >> 16),
                           static_cast<unsigned char>(payload.size() >> 8),
                           static_cast<unsigned char>(payload.size())};
  std::string buf(reinterpret_cast<char*>(head), 4);
  buf += payload;
  std::size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

namespace {

// Reads exactly n bytes; false on EOF, error or deadline.
bool read_exact(int fd, char* out, std::size_t n, std::optional<Clock::time_point> deadline,
                bool* timed_out) {
  std::size_t off = 0;
  while (off < n) {
    int wait_ms = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) {
        *timed_out = true;
        return false;
      }
      wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), 24 * 3600 * 1000));
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) {
      *timed_out = true;
      return false;
    }
    ssize_t got = ::read(fd, out + off, n - off);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    off += static_cast<std::size_t>(got);
  }
  return true;
}

}  // namespace

std::optional<std::string> read_frame(int fd, std::optional<Clock::time_point> deadline,
                                      bool* timed_out) {
  bool dummy = false;
  if (!timed_out) timed_out = &dummy;
  *timed_out = false;
  unsigned char head[4];
  if (!read_exact(fd, reinterpret_cast<char*>(head), 4, deadline, timed_out)) return std::nullopt;
  std::size_t len = (std::size_t{head[0]} << 24) | (std::size_t{head[1]} << 16) |
                    (std::size_t{head[2]} << 8) | std::size_t{head[3]};
  if (len > kMaxFrame) return std::nullopt;
  std::string payload(len, '\0');
  if (!read_exact(fd, payload.data(), len, deadline, timed_out)) return std::nullopt;
  return payload;
}

// ---- child ------------------------------------------------------------------------------------

namespace {

class ChildHost final : public HostServices {
 public:
  ChildHost(std::string name, json::object config, std::filesystem::path artifacts)
      : name_(std::move(name)), config_(std::move(config)), artifacts_(std::move(artifacts)) {}
  void log(LogLevel level, std::string_view message) override {
    spdlog::log(level >= LogLevel::kWarn ? spdlog::level::warn : spdlog::level::debug,
                "[{} node-host] {}", name_, message);
  }
  const json::object& config() const override { return config_; }
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
  void count(std::string_view, double) override {}  // counters live in the parent process
  std::filesystem::path artifact_dir() override {
    std::filesystem::create_directories(artifacts_);
    return artifacts_;
  }
  const std::string& plugin_name() const override { return name_; }
  // Nodes live in the parent process: an isolated tool cannot reach them (documented in
  // docs/architecture/plugin-boundary.md).
  std::shared_ptr<void> selected_node(std::string_view) override { return nullptr; }

 private:
  std::string name_;
  json::object config_;
  std::filesystem::path artifacts_;
};

json::object error_frame(std::uint64_t id, const ToolError& e) {
  return {{"id", id},
          {"ok", false},
          {"error", json::object{{"code", e.code},
                                 {"message", e.message},
                                 {"retryable", e.retryable},
                                 {"details", e.details}}}};
}

}  // namespace

int run_node_host(int fd, const std::filesystem::path& plugin) {
  // The parent may die while a tool hangs here: a watchdog notices the re-parenting.
  const pid_t parent = ::getppid();
  std::thread([parent] {
    for (;;) {
      if (::getppid() != parent) _exit(0);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }).detach();
  // The plugin config comes as the first frame, not on the command line (ps shows that).
  json::object plugin_config;
  std::filesystem::path artifacts;
  {
    auto first = read_frame(fd, std::nullopt, nullptr);
    if (!first) return 0;
    json::error_code ec;
    auto v = json::parse(*first, ec);
    const auto* o = ec ? nullptr : v.if_object();
    const auto* config = o ? o->if_contains("plugin_config") : nullptr;
    const auto* dir = o ? o->if_contains("artifacts") : nullptr;
    if (!config || !config->is_object() || !dir || !dir->is_string()) {
      spdlog::error(
          "node-host: the first frame is not {{\"plugin_config\": {{...}}, \"artifacts\": DIR}}");
      return 2;
    }
    plugin_config = config->as_object();
    artifacts = std::string(dir->as_string());
  }
  plugins::LoadedLibrary lib;
  try {
    lib = plugins::load_library(plugin);
  } catch (const std::exception& e) {
    spdlog::error("node-host: {}", e.what());
    return 5;
  }
  ChildHost host(lib.manifest.name, plugin_config, artifacts);
  std::map<std::string, std::shared_ptr<Tool>, std::less<>> tools;
  for (const auto& t : lib.manifest.tools) {
    try {
      tools[t.name] = t.factory(host);
    } catch (const std::exception& e) {
      spdlog::error("node-host: factory of tool '{}' threw: {}", t.name, e.what());
      return 5;
    }
  }
  for (;;) {
    auto frame = read_frame(fd, std::nullopt, nullptr);
    if (!frame) return 0;  // the parent closed the socket
    json::error_code ec;
    auto req = json::parse(*frame, ec);
    if (ec || !req.is_object()) return 2;
    const auto& o = req.as_object();
    std::uint64_t id = o.at("id").to_number<std::uint64_t>();
    std::string name(o.at("tool").as_string());
    ToolContext ctx;
    ctx.tool = name;
    ctx.tenant = std::string(o.at("tenant").as_string());
    ctx.request_id = std::string(o.at("request_id").as_string());
    if (auto* a = o.if_contains("approved_by"); a && a->is_string())
      ctx.approved_by = std::string(a->as_string());
    ctx.deadline = Clock::now() + std::chrono::milliseconds(o.at("timeout_ms").as_int64());
    json::object reply;
    auto it = tools.find(name);
    if (it == tools.end()) {
      reply = error_frame(
          id,
          ToolError{error_code::kUnknownTool, "node-host has no tool '" + name + "'", false, {}});
    } else {
      ToolOutcome out = [&]() -> ToolOutcome {
        try {
          return it->second->invoke(o.at("input"), ctx);
        } catch (const std::exception& e) {
          return tool_error(error_code::kInternal, "tool '" + name + "' threw: " + e.what());
        } catch (...) {
          return tool_error(error_code::kInternal, "tool '" + name + "' threw");
        }
      }();
      if (out.ok()) {
        const auto& made = out.value().artifacts;
        auto big = std::find_if(made.begin(), made.end(),
                                [](const Artifact& a) { return a.data.size() > kMaxFrame; });
        if (big != made.end())
          out = tool_error(error_code::kInternal, "tool '" + name + "' made file '" + big->name +
                                                      "' of " + std::to_string(big->data.size()) +
                                                      " bytes, more than a node-host passes on (" +
                                                      std::to_string(kMaxFrame) +
                                                      "); run its plugin in process");
      }
      if (!out.ok()) {
        reply = error_frame(id, out.error());
      } else {
        // A tool's files follow its reply, one raw frame each (the bytes as they are).
        json::array listed;
        for (const auto& a : out.value().artifacts)
          listed.push_back(json::object{
              {"name", a.name}, {"media_type", a.media_type}, {"size", a.data.size()}});
        reply = {{"id", id}, {"ok", true}, {"output", out.value().output}, {"artifacts", listed}};
        if (!write_frame(fd, json::serialize(reply))) return 0;
        for (const auto& a : out.value().artifacts)
          if (!write_frame(fd, a.data)) return 0;
        continue;
      }
    }
    if (!write_frame(fd, json::serialize(reply))) return 0;
  }
}

// ---- parent -----------------------------------------------------------------------------------

NodeHost::NodeHost(std::filesystem::path kiln_exe, std::filesystem::path plugin,
                   std::string plugin_name, json::object plugin_config,
                   std::filesystem::path artifacts)
    : exe_(std::move(kiln_exe)),
      plugin_(std::move(plugin)),
      plugin_name_(std::move(plugin_name)),
      plugin_config_text_(json::serialize(json::object{{"plugin_config", std::move(plugin_config)},
                                                       {"artifacts", artifacts.string()}})) {}

NodeHost::~NodeHost() {
  std::lock_guard lock(mu_);
  if (pid_ > 0) reap(true);
}

pid_t NodeHost::pid() const {
  std::lock_guard lock(mu_);
  return pid_;
}

int NodeHost::restarts() const {
  std::lock_guard lock(mu_);
  return starts_ > 0 ? starts_ - 1 : 0;
}

bool NodeHost::ensure_started(std::string* why) {
  if (pid_ > 0) return true;
  auto now = Clock::now();
  if (now < next_start_) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_start_ - now).count();
    *why = "the node-host of plugin " + plugin_name_ + " is restarting in " + std::to_string(ms) +
           " ms after a failure";
    return false;
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    *why = std::string("socketpair failed: ") + std::strerror(errno);
    return false;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    *why = std::string("fork failed: ") + std::strerror(errno);
    return false;
  }
  if (pid == 0) {
    // Signals blocked by `kiln serve` (it waits for SIGTERM with sigwait) must not stay blocked.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (sv[1] == 3)
      ::fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
    else
      ::dup2(sv[1], 3);  // the copy has close-on-exec cleared
    std::string plugin = plugin_.string(), exe = exe_.string();
    const char* argv[] = {exe.c_str(),    "node-host",   "--fd", "3",    "--plugin",
                          plugin.c_str(), "--log-level", "warn", nullptr};
    ::execv(exe.c_str(), const_cast<char* const*>(argv));
    _exit(127);
  }
  ::close(sv[1]);
  pid_ = pid;
  fd_ = sv[0];
  ++starts_;
  if (!write_frame(fd_, plugin_config_text_)) {
    *why = "the node-host of plugin " + plugin_name_ + " could not be given its config (" +
           reap(true) + ")";
    return false;
  }
  spdlog::info("node-host for plugin {} started (pid {})", plugin_name_, pid_);
  return true;
}

std::string NodeHost::reap(bool kill_first) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  // Always kill: a closed socket does not mean the child has exited, and waitpid must not
  // block. SIGKILL to a child that already exited (a zombie) does nothing.
  (void)kill_first;
  ::kill(pid_, SIGKILL);
  int status = 0;
  std::string how = "exited";
  if (::waitpid(pid_, &status, 0) == pid_) {
    if (WIFSIGNALED(status)) {
      const char* abbrev = sigabbrev_np(WTERMSIG(status));
      how = std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
            (abbrev ? abbrev : "?") + ")";
    } else if (WIFEXITED(status))
      how = "exited with code " + std::to_string(WEXITSTATUS(status));
  }
  pid_ = -1;
  ++consecutive_failures_;
  auto delay = std::chrono::seconds(1 << std::min(consecutive_failures_ - 1, 3));  // 1,2,4,8
  next_start_ = Clock::now() + delay;
  spdlog::warn("node-host for plugin {} {}; restart in {} s", plugin_name_, how, delay.count());
  return how + "; restart in " + std::to_string(delay.count()) + " s";
}

ToolOutcome NodeHost::call(const std::string& tool, const json::value& input,
                           const ToolContext& ctx) {
  // Waiting for the child to finish another call counts against this call's deadline; a call
  // whose deadline passes while it waits must not kill a healthy child.
  std::unique_lock lock(mu_, std::defer_lock);
  if (!lock.try_lock_until(ctx.deadline) || Clock::now() >= ctx.deadline)
    return tool_error(error_code::kTimeout,
                      "tool '" + tool + "' waited for the node-host of plugin " + plugin_name_ +
                          " (busy with another call) until its deadline",
                      true);
  std::string why;
  if (!ensure_started(&why)) return tool_error(error_code::kUnavailable, why, true);
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(ctx.deadline - Clock::now());
  std::uint64_t id = next_id_++;
  json::object req{{"id", id},
                   {"tool", tool},
                   {"tenant", ctx.tenant},
                   {"request_id", ctx.request_id},
                   {"approved_by", ctx.approved_by},
                   {"timeout_ms", std::max<std::int64_t>(1, timeout.count())},
                   {"input", input}};
  if (!write_frame(fd_, json::serialize(req))) {
    auto how = reap(true);
    return tool_error("crashed",
                      "node-host of plugin " + plugin_name_ + " was gone before tool '" + tool +
                          "' ran (" + how + ")",
                      true);
  }
  bool timed_out = false;
  auto frame = read_frame(fd_, ctx.deadline, &timed_out);
  if (!frame) {
    if (timed_out) {
      auto how = reap(true);
      return tool_error(error_code::kTimeout,
                        "tool '" + tool + "' in the node-host of plugin " + plugin_name_ +
                            " did not answer within " + std::to_string(timeout.count()) +
                            " ms; the child was killed (" + how + ")",
                        true);
    }
    auto how = reap(false);
    return tool_error("crashed", "tool '" + tool + "' crashed the node-host of plugin " +
                                     plugin_name_ + ": " + how);
  }
  json::error_code ec;
  auto reply = json::parse(*frame, ec);
  const json::object* ro = !ec && reply.is_object() ? &reply.as_object() : nullptr;
  const json::value* okv = ro ? ro->if_contains("ok") : nullptr;
  const json::value* ev = ro ? ro->if_contains("error") : nullptr;
  // An ok reply may list files ({name, media_type, size}), whose bytes follow, a frame each; an
  // error reply lists none (frames after it would be read as the next call's reply).
  const json::value* av = ro ? ro->if_contains("artifacts") : nullptr;
  const bool files_listed =
      !av || (okv && okv->is_bool() && okv->as_bool() && av->is_array() &&
              std::all_of(av->as_array().begin(), av->as_array().end(), [](const json::value& f) {
                const auto* fo = f.if_object();
                const auto* size = fo ? fo->if_contains("size") : nullptr;
                return fo && fo->contains("name") && fo->at("name").is_string() &&
                       fo->contains("media_type") && fo->at("media_type").is_string() && size &&
                       (size->is_uint64() || (size->is_int64() && size->as_int64() >= 0));
              }));
  bool well_formed =
      okv && okv->is_bool() && files_listed &&
      (okv->as_bool() ? ro->contains("output")
                      : ev && ev->is_object() && ev->as_object().contains("code") &&
                            ev->at("code").is_string() && ev->as_object().contains("message") &&
                            ev->at("message").is_string() &&
                            ev->as_object().contains("retryable") && ev->at("retryable").is_bool());
  if (!well_formed) {
    auto how = reap(true);
    return tool_error(error_code::kInternal, "node-host of plugin " + plugin_name_ +
                                                 " sent a malformed reply (" + how + ")");
  }
  consecutive_failures_ = 0;
  const auto& r = reply.as_object();
  if (r.at("ok").as_bool()) {
    ToolResult result{r.at("output"), {}};
    if (av) {
      for (const auto& f : av->as_array()) {
        auto bytes = read_frame(fd_, ctx.deadline, &timed_out);
        const auto& fo = f.as_object();
        if (!bytes || bytes->size() != fo.at("size").to_number<std::uint64_t>()) {
          auto how = reap(true);
          if (timed_out)
            return tool_error(error_code::kTimeout,
                              "tool '" + tool + "' in the node-host of plugin " + plugin_name_ +
                                  " did not pass on its files within " +
                                  std::to_string(timeout.count()) + " ms; the child was killed (" +
                                  how + ")",
                              true);
          return tool_error(error_code::kInternal,
                            "node-host of plugin " + plugin_name_ + " did not pass on file '" +
                                std::string(fo.at("name").as_string()) + "' of tool '" + tool +
                                "' whole (" + how + ")",
                            true);
        }
        result.artifacts.push_back(Artifact{std::string(fo.at("name").as_string()),
                                            std::string(fo.at("media_type").as_string()),
                                            std::move(*bytes)});
      }
    }
    return result;
  }
  const auto& e = r.at("error").as_object();
  ToolError err{std::string(e.at("code").as_string()), std::string(e.at("message").as_string()),
                e.at("retryable").as_bool(),
                e.contains("details") ? e.at("details") : json::value()};
  return Unexpected<ToolError>{std::move(err)};
}

}  // namespace kiln::runtime
