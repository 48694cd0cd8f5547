#include "common/log.hpp"

#include <chrono>
#include <ctime>
#include <stdexcept>

#include <spdlog/pattern_formatter.h>
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
    o["msg"] = boost::json::string_view(msg.payload.data(), msg.payload.size());
    auto text = boost::json::serialize(o);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
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
}

}  // namespace kiln::common
