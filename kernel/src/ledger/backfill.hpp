// Idempotent export of the ledger to files, one JSONL file per (tenant, stream), each with a
// marker holding its event count, last seq and SHA-256. A partition whose marker matches both
// the ledger and the file is skipped; a missing or stale marker (or a changed file) re-exports.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ledger/ledger.hpp"

namespace kiln::ledger {

struct BackfillPartition {
  std::string tenant;
  std::string stream;
  std::int64_t count = 0;
  std::string action;  // "exported" | "up to date"
  std::string reason;  // why it was exported: "no marker", "marker stale: ...", "forced"
  std::filesystem::path file;
};

struct BackfillReport {
  std::vector<BackfillPartition> partitions;
  int exported() const;
  int skipped() const;
};

// Throws std::runtime_error naming the file on I/O errors; a partition is replaced atomically
// (temporary file, then rename; the marker last), so a crash leaves the old one or none.
BackfillReport backfill(Ledger& ledger, const std::filesystem::path& dir,
                        const std::optional<std::string>& tenant,
                        const std::optional<std::string>& stream, bool force);

// "acme/site 1" -> "acme%2Fsite%201": a name that is always one safe path segment.
std::string path_segment(const std::string& name);

}  // namespace kiln::ledger
