#include "common/log.hpp"

#include <chrono>
#include <ctime>
#include <mutex>
#include <stdexcept>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/json.hpp>

namespace kiln::common {
namespace {

// One JSON object per line: {"ts","level","logger","msg"}; strings escaped by Boost.JSON.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    auto since = msg.time.time_since_epoch();
    auto secs = duration_cast<seconds>(since);
    auto micros = duration_cast<microseconds>(since - secs).count();
    std::time_t t = secs.count();
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[40];
    std::size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(ts + n, sizeof ts - n, ".%06ldZ", static_cast<long>(micros));
    boost::json::object o;
    o["ts"] = ts;
    auto lv = spdlog::level::to_string_view(msg.level);
    o["level"] = boost::json::string_view(lv.data(), lv.size());
    if (msg.logger_name.size() > 0)
      o["logger"] = boost::json::string_view(msg.logger_name.data(), msg.logger_name.size());
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (std::string_view(msg.logger_name.data(), msg.logger_name.size()) == "access" &&
        payload.size() > 2 && payload.front() == '{' && payload.back() == '}') {
      // The access log's fields, already a JSON object (the server writes them so in JSON
      // mode): its members join the line's, so that a log pipeline filters on status or tenant.
      auto text = boost::json::serialize(o);
      text.back() = ',';
      text.append(payload.substr(1));
      dest.append(text.data(), text.data() + text.size());
      dest.push_back('\n');
      return;
    }
    o["msg"] = boost::json::string_view(payload.data(), payload.size());
    auto text = boost::json::serialize(o);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

std::string g_format = "text";  // set by setup_logging

std::unique_ptr<spdlog::formatter> make_formatter(const std::string& format) {
  if (format == "json") return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v",
                                                     spdlog::pattern_time_type::utc);
}

// The access log's sink: each thread formats into its own buffer (with its own formatter clone),
// written to stderr in one piece when it passes 16 KiB or when the thread flushes (the server
// flushes every I/O thread's buffer every 200 ms, and at shutdown). Request threads never wait
// for each other or for another thread to wake up.
class BufferedStderrSink final : public spdlog::sinks::sink {
 public:
  explicit BufferedStderrSink(std::string format) : format_(std::move(format)) {}
  void log(const spdlog::details::log_msg& msg) override {
    auto& t = local();
    t.formatter->format(msg, t.buffer);
    if (t.buffer.size() >= 16 * 1024) write(t);
  }
  void flush() override { write(local()); }
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

 private:
  struct Local {
    std::unique_ptr<spdlog::formatter> formatter;
    spdlog::memory_buf_t buffer;
  };
  Local& local() {
    thread_local Local t;
    if (!t.formatter) t.formatter = make_formatter(format_);
    return t;
  }
  void write(Local& t) {
    if (t.buffer.size() == 0) return;
    static std::mutex out_mu;
    std::lock_guard lock(out_mu);
    std::fwrite(t.buffer.data(), 1, t.buffer.size(), stderr);
    std::fflush(stderr);
    t.buffer.clear();
  }
  std::string format_;
};

}  // namespace

void setup_logging(const std::string& level, const std::string& format) {
  auto lv = spdlog::level::from_str(level);
  if (lv == spdlog::level::off && level != "off")
    throw std::invalid_argument("log level '" + level +
                                "' is not one of trace, debug, info, warn, error, critical, off");
  spdlog::drop("kiln");
  auto logger = spdlog::stderr_logger_mt("kiln");
  if (format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else if (format == "text") {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v", spdlog::pattern_time_type::utc);
  } else {
    throw std::invalid_argument("log format '" + format + "' is not one of text, json");
  }
  logger->set_level(lv);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  g_format = format;
}

bool json_logs() {
  return g_format == "json";
}

std::shared_ptr<spdlog::logger> access_logger() {
  static std::mutex mu;
  std::lock_guard lock(mu);
  if (auto existing = spdlog::get("access")) return existing;
  auto base = spdlog::default_logger();
  auto logger =
      std::make_shared<spdlog::logger>("access", std::make_shared<BufferedStderrSink>(g_format));
  logger->set_level(base->level());
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace kiln::common
