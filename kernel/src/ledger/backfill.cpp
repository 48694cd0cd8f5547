#include "ledger/backfill.hpp"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include "common/files.hpp"
#include "common/sha256.hpp"

namespace kiln::ledger {
namespace fs = std::filesystem;
namespace json = boost::json;

int BackfillReport::exported() const {
  int n = 0;
  for (const auto& p : partitions) n += p.action == "exported";
  return n;
}

int BackfillReport::skipped() const {
  return static_cast<int>(partitions.size()) - exported();
}

std::string path_segment(const std::string& name) {
  std::string out;
  for (unsigned char ch : name) {
    if (std::isalnum(ch) || ch == '_' || ch == '-' || (ch == '.' && !out.empty())) {
      out += static_cast<char>(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", ch);
      out += buf;
    }
  }
  return out.empty() ? "%00" : out;
}

namespace {

void fsync_file(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot sync " + p.string() + ": " + std::strerror(err));
  }
  ::close(fd);
}

void write_atomically(const fs::path& target, const std::string& tmp_suffix,
                      const std::function<void(std::ostream&)>& fill) {
  const fs::path tmp = target.string() + tmp_suffix;
  struct RemoveOnFailure {
    const fs::path& p;
    bool armed = true;
    ~RemoveOnFailure() {
      std::error_code ec;
      if (armed) fs::remove(p, ec);
    }
  } cleanup{tmp};
  {
    // Mode 0640 as the database it comes from (the keys stream holds API key hashes), and not
    // through a link left at the temporary name.
    ::close(common::open_output_file(tmp, 0640));
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    if (!out)
      throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
    fill(out);
    out.flush();
    if (!out)
      throw std::runtime_error("writing " + tmp.string() +
                               " failed (disk full?): " + std::strerror(errno));
  }
  fsync_file(tmp);
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) throw std::runtime_error("cannot replace " + target.string() + ": " + ec.message());
  cleanup.armed = false;
  fsync_file(target.parent_path());  // the rename itself survives a power loss
}

// Why the partition must be exported again, or "" when the marker matches ledger and file.
std::string stale_reason(const StreamInfo& s, const fs::path& file, const fs::path& marker) {
  std::ifstream in(marker);
  if (!in) return "no marker";
  std::stringstream ss;
  ss << in.rdbuf();
  json::error_code ec;
  auto m = json::parse(ss.str(), ec);
  if (ec || !m.is_object()) return "marker unreadable";
  const auto& o = m.as_object();
  auto num = [&](const char* k) -> std::int64_t {
    auto* v = o.if_contains(k);
    return v && v->is_int64() ? v->as_int64() : -1;
  };
  if (num("count") != s.count || num("last_seq") != s.last_seq)
    return "marker stale: " + std::to_string(num("count")) + " events exported, ledger has " +
           std::to_string(s.count);
  if (!fs::exists(file)) return "file missing";
  auto* sha = o.if_contains("sha256");
  if (!sha || !sha->is_string() || sha->as_string() != common::sha256_file(file))
    return "file changed since its export (sha256 differs from the marker)";
  return {};
}

}  // namespace

BackfillReport backfill(Ledger& ledger, const fs::path& dir,
                        const std::optional<std::string>& tenant,
                        const std::optional<std::string>& stream, bool force) {
  BackfillReport report;
  const std::string suffix = ".tmp." + std::to_string(::getpid());
  for (const auto& s : ledger.streams()) {
    if ((tenant && s.tenant != *tenant) || (stream && s.stream != *stream)) continue;
    const fs::path folder = dir / path_segment(s.tenant);
    const fs::path file = folder / (path_segment(s.stream) + ".jsonl");
    const fs::path marker = folder / (path_segment(s.stream) + ".marker.json");
    BackfillPartition p{s.tenant, s.stream, s.count, "", "", file};
    std::string why = force ? "forced" : stale_reason(s, file, marker);
    if (why.empty()) {
      p.action = "up to date";
      report.partitions.push_back(std::move(p));
      continue;
    }
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec) throw std::runtime_error("cannot create " + folder.string() + ": " + ec.message());
    // Export up to the seq seen above, so file and marker describe the same events even while
    // appends go on.
    std::int64_t written = 0, last = 0;
    write_atomically(file, suffix, [&](std::ostream& out) {
      ExportFilter only;
      only.tenant = s.tenant;
      only.stream = s.stream;
      ledger.for_each(only, [&](const Event& e) {
        if (e.seq > s.last_seq) return;
        out << json::serialize(e.to_json()) << '\n';
        ++written;
        last = e.seq;
      });
    });
    json::object m{{"tenant", s.tenant},
                   {"stream", s.stream},
                   {"count", written},
                   {"last_seq", last},
                   {"sha256", common::sha256_file(file)},
                   {"exported_at", utc_now_millis()}};
    write_atomically(marker, suffix, [&](std::ostream& out) { out << json::serialize(m) << '\n'; });
    p.action = "exported";
    p.reason = why;
    p.count = written;
    report.partitions.push_back(std::move(p));
  }
  return report;
}

}  // namespace kiln::ledger
