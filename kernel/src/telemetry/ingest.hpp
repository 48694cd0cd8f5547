// Telemetry ingestion: a signed envelope in, a stored batch out — or a refusal with a stable
// reason. Checks, in order: size, envelope form, key (known, not revoked or expired, of this
// tenant), signature, payload, device (the key's and the stream's), clock skew, boot epoch and
// sequence window; then the batch is stored once per (tenant, device, boot, seq), listed with its
// digest in a telemetry.batches ledger event shared by the batches stored together. See
// docs/architecture/telemetry.md.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/json.hpp>

#include "ledger/ledger.hpp"
#include "telemetry/devices.hpp"

namespace kiln::telemetry {

struct IngestOptions {
  double max_skew_s = 300;        // sent_at ahead of the server's clock by more → clock_skew
  double max_age_s = 7 * 86400;   // sent_at older than this (a long-spooled batch) → clock_skew
  std::size_t max_samples = 600;  // samples per batch; more → oversized_batch
  std::size_t max_bytes = 65536;  // envelope size; more → oversized_batch
  std::uint64_t window = 64;      // sequence numbers this far behind the highest are refused
  // Stored batches wait in telemetry_inbox (no indexes) until this many are there or this long
  // has passed since the last move, then move to telemetry_batches in key order.
  std::size_t inbox_batches = 4096;
  std::chrono::milliseconds inbox_interval{2000};
};

// Stable refusal reasons (metrics label, ledger payload, HTTP error code).
namespace reject {
inline constexpr const char* kOversized = "oversized_batch";
inline constexpr const char* kMalformed = "malformed";
inline constexpr const char* kUnsupportedAlg = "unsupported_alg";
inline constexpr const char* kUnknownKey = "unknown_key";
inline constexpr const char* kRevokedKey = "revoked_key";
inline constexpr const char* kExpiredKey = "expired_key";
inline constexpr const char* kBadSignature = "bad_signature";
inline constexpr const char* kBadPayload = "bad_payload";
inline constexpr const char* kWrongDevice = "wrong_device";
inline constexpr const char* kBadSamples = "bad_samples";
inline constexpr const char* kClockSkew = "clock_skew";
inline constexpr const char* kStaleBoot = "stale_boot";
inline constexpr const char* kStaleSequence = "stale_sequence";
inline constexpr const char* kReplayedSequence = "replayed_sequence";
// Every reason above, in one list (metrics, clients telling an envelope's refusal apart).
inline const std::vector<std::string_view>& all() {
  static const std::vector<std::string_view> reasons = {
      kOversized,  kMalformed,    kUnsupportedAlg, kUnknownKey,      kRevokedKey,
      kExpiredKey, kBadSignature, kBadPayload,     kWrongDevice,     kBadSamples,
      kClockSkew,  kStaleBoot,    kStaleSequence,  kReplayedSequence};
  return reasons;
}
// A refusal about the device key, not the envelope: every later batch signed with the key would
// be refused the same way (a recorder stops on it).
inline bool about_the_key(std::string_view reason) {
  for (const char* r : {kUnknownKey, kRevokedKey, kExpiredKey, kWrongDevice, kBadSignature})
    if (reason == r) return true;
  return false;
}
}  // namespace reject

struct IngestResult {
  bool accepted = false;   // stored now, or stored before (duplicate)
  bool duplicate = false;  // the same envelope was stored before; nothing stored now
  std::string reason;      // a reject:: code when refused
  std::string message;     // what was wrong, for a person
  std::string kid, device;
  std::uint64_t boot = 0, seq = 0;
  std::size_t samples = 0;
  bool decoded = false;  // boot, seq and samples are the batch's (else unknown: null in JSON)
  // Checked only (Ingestor::check_only): nothing was stored, counted or recorded.
  bool dry_run = false;
  // Payload keys skipped as unknown or repeated (stored without them): the answer names them.
  std::vector<std::string> ignored_keys;
  // The telemetry.batches event listing this batch, shared by the batches stored with it (0 for
  // a duplicate).
  std::int64_t ledger_seq = 0;
  boost::json::object to_json() const;
  int http_status() const;  // 200 accepted, else by reason
};

class Ingestor {
 public:
  // `on_stored` is called after a batch is durable (not for duplicates), outside any lock.
  using StoredFn = std::function<void(const std::string& tenant, const Batch& batch)>;
  Ingestor(ledger::SqliteLedger& ledger, DeviceRegistry& devices, IngestOptions options,
           StoredFn on_stored = nullptr);
  ~Ingestor();

  // `stream` is the device the client says it sends for (bound into the signature as external
  // AAD with the tenant); `now` is the server's time in seconds since the Unix epoch. Returns
  // once the batch is durable (or refused). Throws storage::StorageError when it cannot be
  // stored.
  IngestResult ingest(const std::string& tenant, const std::string& stream,
                      std::string_view envelope, double now);
  // The same without a waiting thread: the checks (signature included) run on the calling
  // thread, the store joins the ledger's next group commit, and `done` gets the result — on the
  // calling thread for a refusal found before storing, else on the ledger's flusher thread once
  // the batch is durable (or on another caller's thread when the ledger is closing), so it must
  // be quick (post the answer somewhere). `error` is set, and
  // the result not accepted, when the batch could not be stored.
  using Done = std::function<void(IngestResult result, std::exception_ptr error)>;
  void ingest_async(const std::string& tenant, const std::string& stream, std::string_view envelope,
                    double now, Done done);

  // Every check ingest() makes — size, key, signature, payload, clocks, boot and sequence
  // window, and whether that (boot, seq) is stored already (duplicate: true) or with other
  // content (replayed_sequence) — and the answer it would give, with `dry_run` set; nothing is
  // stored, counted or recorded in the ledger, and the sequence window does not move. For a
  // device integrator trying an encoder against a server (POST /v1/telemetry/{device}
  // ?dry_run=true). Runs on the calling thread.
  IngestResult check_only(const std::string& tenant, const std::string& stream,
                          std::string_view envelope, double now);

  // The refusal of an envelope of `bytes` (0: unknown, a chunked body cut off) over the size
  // limit, counted and in the ledger as any other (unless `dry_run`): for a body the HTTP server
  // does not read.
  IngestResult refuse_oversized(const std::string& tenant, const std::string& stream,
                                std::size_t bytes, bool dry_run = false);

  // Counters for /metrics: kiln_telemetry_batches_total, _samples_total, _duplicates_total,
  // kiln_telemetry_rejected_total{reason}, and per device the time of its last batch
  // (kiln_telemetry_last_batch_timestamp_seconds{tenant,device}: a roaster gone quiet).
  void expose(std::string& out) const;
  // Reads when each device's newest stored batch arrived, so the gauge above carries every device
  // from a server's start: one restarted while a roaster is silent keeps the alert firing.
  void recall_last_batches();
  std::map<std::string, std::int64_t> rejected() const;
  std::int64_t accepted_batches() const { return batches_.load(); }
  // Moves of the inbox into telemetry_batches since start.
  std::int64_t inbox_moves() const { return inbox_moves_.load(); }

 private:
  // A refusal, counted and recorded as telemetry.rejected unless `r.dry_run`.
  IngestResult refuse(const std::string& tenant, IngestResult r, const char* reason,
                      std::string message);
  struct Accepted;  // a batch that passed every check, on its way to storage
  // Every check up to the store; fills `a` and returns nullopt when the batch may be stored.
  std::optional<IngestResult> check(const std::string& tenant, const std::string& stream,
                                    std::string_view envelope, double now, Accepted& a);
  // Queues the command that stores every staged batch in the writer's next group.
  void submit_store();
  // Answers every staged batch with `error` when no store command will take them.
  void fail_staged(std::exception_ptr error);
  // Hands a batch its answer; a throwing handler is logged, the next batch still answered.
  static void answer(Accepted& a, IngestResult r, std::exception_ptr error);
  // The inbox (telemetry_inbox) as the writer knows it: the keys and digests of its batches.
  // Read and written on the ledger's writer thread only (store commands).
  static std::string inbox_key(const std::string& tenant, const std::string& device,
                               std::uint64_t boot, std::uint64_t seq);
  void sync_inbox(storage::Connection& c);  // reads it again when it may have changed under us
  void move_inbox(storage::Connection& c);  // into telemetry_batches, in key order
  // After the store: the result, the window moved on, counters, the sessionizer fed.
  IngestResult stored(Accepted& a, std::int64_t ledger_seq);
  struct Window {
    bool loaded = false;
    std::uint64_t boot = 0;
    std::uint64_t high = 0;  // highest seq stored for `boot`
    bool any = false;
    double last_stored = 0;  // server time (Unix seconds) of its last batch stored (or recalled)
  };
  ledger::SqliteLedger& ledger_;
  DeviceRegistry& devices_;
  storage::ReaderPool readers_;  // a device's stored window, read once
  IngestOptions options_;
  StoredFn on_stored_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Window> windows_;  // (tenant, device)
  std::map<std::string, std::int64_t> rejected_;
  std::mutex stage_mu_;
  std::vector<std::unique_ptr<Accepted>> staged_;  // checked, waiting for the store command
  bool store_queued_ = false;  // a store command is queued and has not taken staged_ yet
  std::unordered_map<std::string, std::string> inbox_;  // inbox_key → digest (writer thread)
  bool inbox_known_ = false;                            // (writer thread)
  std::int64_t inbox_data_version_ = -1;                // (writer thread)
  std::uint64_t inbox_rollbacks_ = 0;                   // (writer thread)
  std::chrono::steady_clock::time_point last_move_ = std::chrono::steady_clock::now();
  std::atomic<std::int64_t> inbox_moves_{0};
  std::atomic<std::int64_t> batches_{0}, samples_{0}, duplicates_{0};
};

// Samples as JSON rows, [[t, bt, et, ror, heater, fan, drum, state], ...]: the HTTP API's form,
// and how batches were stored before migration 8.
boost::json::array samples_json(const std::vector<Sample>& samples);
std::vector<Sample> samples_from_json(const boost::json::array& rows);
// The samples of a batch stored as its signed envelope (`envelope` column), sent by `device` of
// `tenant`. Throws when the bytes are not such an envelope (the row was damaged).
std::vector<Sample> samples_from_envelope(std::string_view envelope, const std::string& tenant,
                                          const std::string& device);

// The stored telemetry checked against the ledger (`kiln ledger verify`): every batch row (the
// indexed table and the inbox) must hash to its digest (rows stored as their envelope) and be
// listed with that digest in a `telemetry.batches` event, and every batch an event lists must be
// stored. The ledger's own chain is verify_file's; this ties the readings to it.
struct StoredBatchCheck {
  std::int64_t checked = 0;        // rows read
  std::int64_t without_bytes = 0;  // rows from before migration 8 (their digest only)
  std::int64_t problem_count = 0;
  std::vector<std::string> problems;  // the first 20, for a person
};
StoredBatchCheck check_stored_batches(const std::filesystem::path& db);

}  // namespace kiln::telemetry
