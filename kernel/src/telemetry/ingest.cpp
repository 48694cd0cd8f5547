#include "telemetry/ingest.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <tuple>

#include "common/sha256.hpp"
#include "runtime/metrics.hpp"
#include "storage/sqlite.hpp"

namespace kiln::telemetry {
namespace json = boost::json;

namespace {

// Beyond any roaster probe's range (°C; a °F device stays far inside it too).
constexpr double kMaxReadingC = 1000;

std::string value_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", s);
  return buf;
}

// replayed_sequence's message.
std::string replayed(const Batch& b) {
  return "sequence " + std::to_string(b.seq) + " of boot " + std::to_string(b.device.boot) +
         " is stored already with other content (a replay, or a device that reuses sequence "
         "numbers)";
}

}  // namespace

// At most 64 characters of `s`, printable ASCII kept and every other byte as \xNN: what an
// untrusted field may show of itself in a message or a ledger event.
std::string printable(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
  }
  if (s.size() > 64) out += "...";
  return out;
}

json::array samples_json(const std::vector<Sample>& samples) {
  json::array rows;
  rows.reserve(samples.size());
  for (const auto& s : samples)
    rows.push_back(json::array{s.t, s.bt, s.et, s.ror, s.heater, s.fan, s.drum, s.state});
  return rows;
}

std::vector<Sample> samples_from_json(const json::array& rows) {
  std::vector<Sample> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    const auto& a = r.as_array();
    Sample s;
    s.t = a.at(0).to_number<double>();
    s.bt = a.at(1).to_number<double>();
    s.et = a.at(2).to_number<double>();
    s.ror = a.at(3).to_number<double>();
    s.heater = static_cast<int>(a.at(4).to_number<std::int64_t>());
    s.fan = static_cast<int>(a.at(5).to_number<std::int64_t>());
    s.drum = static_cast<int>(a.at(6).to_number<std::int64_t>());
    s.state = static_cast<int>(a.at(7).to_number<std::int64_t>());
    out.push_back(s);
  }
  return out;
}

std::vector<Sample> samples_from_envelope(std::string_view envelope, const std::string& tenant,
                                          const std::string& device) {
  EnvelopeError err;
  auto parsed = detail::parse_envelope(envelope, tenant, device, &err);
  std::optional<Batch> batch;
  if (parsed) batch = detail::decode_batch(parsed->payload, &err);
  if (!batch)
    throw std::runtime_error(
        "a stored telemetry batch of device " + device + " (tenant " + tenant +
        ") cannot be read: " + err.message +
        "; the row was changed or the database is damaged (the ledger's telemetry.batches "
        "event holds the digest the envelope had)");
  return std::move(batch->samples);
}

StoredBatchCheck check_stored_batches(const std::filesystem::path& db) {
  StoredBatchCheck r;
  auto problem = [&r](std::string what) {
    if (r.problems.size() < 20) r.problems.push_back(std::move(what));
    ++r.problem_count;
  };
  auto key = [](const std::string& tenant, const std::string& device, std::int64_t boot,
                std::int64_t seq) {
    return tenant + "/" + device + " boot " + std::to_string(boot) + " seq " + std::to_string(seq);
  };
  storage::Connection c(db, storage::Connection::Mode::kReadOnly);
  // What the ledger says was stored: batch → (digest, the event's seq).
  std::map<std::string, std::pair<std::string, std::int64_t>> listed;
  auto events = c.prepare(
      "SELECT seq, tenant, payload FROM ledger WHERE kind = 'telemetry.batches' ORDER BY seq");
  while (events.step()) {
    json::error_code ec;
    const auto payload = json::parse(events.text(2), ec);
    const auto* batches = !ec && payload.is_object() ? payload.as_object().if_contains("batches")
                                                     : static_cast<const json::value*>(nullptr);
    if (!batches || !batches->is_array()) {
      problem("ledger seq " + std::to_string(events.int64(0)) +
              ": a telemetry.batches event without its batches");
      continue;
    }
    for (const auto& b : batches->as_array()) {
      try {
        const auto& o = b.as_object();
        listed[key(events.text(1), std::string(o.at("device").as_string()),
                   o.at("boot").to_number<std::int64_t>(), o.at("seq").to_number<std::int64_t>())] =
            {std::string(o.at("digest").as_string()), events.int64(0)};
      } catch (const std::exception&) {
        problem("ledger seq " + std::to_string(events.int64(0)) + ": a batch listed without " +
                "its device, boot, seq or digest: " + json::serialize(b));
      }
    }
  }
  for (const char* table : {"telemetry_batches", "telemetry_inbox"}) {
    // A database from before the table, or before the envelope column (migration 8), read as
    // it is: verify opens any file without migrating it.
    auto columns = c.prepare("SELECT name FROM pragma_table_info(?)");
    columns.bind(1, table);
    bool exists = false, has_envelope = false;
    while (columns.step()) {
      exists = true;
      has_envelope |= columns.text(0) == "envelope";
    }
    if (!exists) continue;
    auto rows = c.prepare(std::string("SELECT tenant, device, boot, seq, digest, ") +
                          (has_envelope ? "envelope" : "NULL") + " FROM " + table);
    while (rows.step()) {
      ++r.checked;
      const std::string k = key(rows.text(0), rows.text(1), rows.int64(2), rows.int64(3));
      const std::string digest = rows.text(4);
      if (rows.is_null(5)) {
        ++r.without_bytes;
      } else if (common::sha256_hex(rows.blob(5)) != digest) {
        problem(k + ": the stored envelope does not hash to its digest (the row was changed)");
        listed.erase(k);
        continue;
      }
      const auto it = listed.find(k);
      if (it == listed.end())
        problem(k + ": stored, but no telemetry.batches event lists it");
      else if (it->second.first != digest)
        problem(k + ": its digest is not the one ledger seq " + std::to_string(it->second.second) +
                " lists");
      if (it != listed.end()) listed.erase(it);
    }
  }
  for (const auto& [k, at] : listed)
    problem(k + ": listed at ledger seq " + std::to_string(at.second) + " but not stored");
  return r;
}

json::object IngestResult::to_json() const {
  json::object o{{"accepted", accepted}, {"duplicate", duplicate}};
  // The same keys on every answer; null where the envelope was refused before they were read
  // (no key id in a malformed envelope; boot, seq and samples unknown, not 0).
  o["device"] = device.empty() ? json::value(nullptr) : json::value(device);
  o["kid"] = kid.empty() ? json::value(nullptr) : json::value(kid);
  o["boot"] = decoded ? json::value(boot) : json::value(nullptr);
  o["seq"] = decoded ? json::value(seq) : json::value(nullptr);
  o["samples"] = decoded ? json::value(samples) : json::value(nullptr);
  if (ledger_seq > 0) o["ledger_seq"] = ledger_seq;
  if (dry_run) o["dry_run"] = true;
  if (!ignored_keys.empty()) {
    json::array keys;
    for (const auto& k : ignored_keys) keys.emplace_back(k);
    o["ignored_keys"] = std::move(keys);
  }
  return o;
}

int IngestResult::http_status() const {
  if (accepted) return 200;
  if (reason == reject::kOversized) return 413;
  if (reason == reject::kUnknownKey || reason == reject::kRevokedKey ||
      reason == reject::kExpiredKey || reason == reject::kBadSignature)
    return 401;
  if (reason == reject::kWrongDevice) return 403;
  if (reason == reject::kStaleBoot || reason == reject::kStaleSequence ||
      reason == reject::kReplayedSequence)
    return 409;
  if (reason == reject::kClockSkew || reason == reject::kBadSamples) return 422;
  return 400;  // malformed, unsupported_alg, bad_payload
}

Ingestor::Ingestor(ledger::SqliteLedger& ledger, DeviceRegistry& devices, IngestOptions options,
                   StoredFn on_stored)
    : ledger_(ledger),
      devices_(devices),
      readers_(ledger.path()),
      options_(options),
      on_stored_(std::move(on_stored)) {}

void Ingestor::recall_last_batches() {
  auto c = readers_.acquire();
  auto st = c->prepare(
      "SELECT tenant, device, (julianday(max(received_at)) - 2440587.5) * 86400.0 FROM "
      "telemetry_all GROUP BY tenant, device");
  std::lock_guard lock(mu_);
  while (st.step()) {
    Window& w = windows_[std::make_pair(st.text(0), st.text(1))];  // loaded stays false
    w.last_stored = std::max(w.last_stored, st.real(2));
  }
}

Ingestor::~Ingestor() {
  // Store commands and their answers refer to this object: let the queued ones finish first.
  // (Nobody may call ingest_async any more.)
  // The ledger must outlive this object, and this must not run on the ledger's own threads.
  try {
    ledger_.flush();
  } catch (const std::exception& e) {
    spdlog::error("telemetry: the ledger could not be flushed before ingestion stopped: {}",
                  e.what());
  }
}

IngestResult Ingestor::refuse(const std::string& tenant, IngestResult r, const char* reason,
                              std::string message) {
  r.accepted = false;
  r.reason = reason;
  r.message = std::move(message);
  if (r.dry_run) return r;
  {
    std::lock_guard lock(mu_);
    ++rejected_[reason];
  }
  json::object payload{{"reason", r.reason}, {"message", r.message}};
  if (!r.device.empty()) payload["device"] = r.device;
  if (!r.kid.empty()) payload["kid"] = r.kid;
  if (r.decoded) {
    payload["boot"] = r.boot;
    payload["seq"] = r.seq;
  }
  ledger_.append_async({ledger::NewEvent{tenant, "telemetry", "telemetry.rejected", payload}});
  return r;
}

IngestResult Ingestor::refuse_oversized(const std::string& tenant, const std::string& stream,
                                        std::size_t bytes, bool dry_run) {
  IngestResult r;
  r.device = stream;
  r.dry_run = dry_run;
  const std::string limit = std::to_string(options_.max_bytes);
  return refuse(tenant, r, reject::kOversized,
                (bytes ? "the envelope has " + std::to_string(bytes) + " bytes; at most " + limit +
                             " are accepted"
                       : "the envelope is larger than the " + limit + " bytes accepted") +
                    " (send smaller batches)");
}

struct Ingestor::Accepted {
  std::string tenant;
  IngestResult r;
  Batch batch;
  std::string kid, now_text, digest;
  std::string envelope;  // stored as it arrived
  Done done;
  // Behind the device's sequence window (stale_boot, stale_sequence): refused unless it is
  // stored already, when it is a duplicate — a spooled batch sent again after the device's next
  // boot (a power cut undid the spool's removal) is answered as stored, not refused.
  const char* stale = nullptr;
  std::string stale_message;
  enum class Outcome { kStored, kDuplicate, kReplayed, kStale } outcome = Outcome::kStored;
};

std::optional<IngestResult> Ingestor::check(const std::string& tenant, const std::string& stream,
                                            std::string_view envelope, double now, Accepted& a) {
  IngestResult& r = a.r;
  r.device = stream;
  if (envelope.size() > options_.max_bytes)
    return refuse_oversized(tenant, stream, envelope.size(), r.dry_run);
  EnvelopeError err;
  auto parsed = detail::parse_envelope(envelope, tenant, stream, &err);
  if (!parsed)
    return refuse(tenant, r,
                  err.reason == "unsupported_alg" ? reject::kUnsupportedAlg : reject::kMalformed,
                  err.message);
  // kiln's key ids are 16 hex digits (sent as those characters); a device that sends the key's
  // 8 bytes instead (a COSE habit) means the same key. Anything else names no key of ours, and
  // is never echoed raw: it would put arbitrary bytes into a JSON answer and the ledger.
  auto is_key_id = [](const std::string& x) {
    return x.size() == 16 && std::all_of(x.begin(), x.end(), [](char c) {
             return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
  };
  if (!is_key_id(parsed->kid) && parsed->kid.size() == 8)
    parsed->kid = to_hex(reinterpret_cast<const unsigned char*>(parsed->kid.data()), 8);
  if (!is_key_id(parsed->kid)) {
    r.kid = printable(parsed->kid);
    return refuse(
        tenant, r, reject::kUnknownKey,
        "the key id '" + r.kid + "' is not a kiln key id: 16 lower-case hex digits " +
            "(or the key's 8 bytes), as GET /v1/devices or `kiln devices list` shows them");
  }
  r.kid = parsed->kid;
  auto key = devices_.find(tenant, parsed->kid);
  if (!key)
    return refuse(
        tenant, r, reject::kUnknownKey,
        "no device key '" + parsed->kid + "' in tenant " + tenant +
            " (the device's key is registered with POST /v1/devices or `kiln devices add`)");
  a.now_text = ledger::utc_millis(std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::duration<double>(now))));
  const std::string status = key->status(a.now_text);
  if (status == "revoked")
    return refuse(tenant, r, reject::kRevokedKey,
                  "device key " + key->kid + " was revoked at " + *key->revoked_at);
  if (status == "expired")
    return refuse(tenant, r, reject::kExpiredKey,
                  "device key " + key->kid + " was rotated out; it expired at " + *key->not_after +
                      " (the device must sign with its new key)");
  // Sent for another device than its key's (a wrong URL): the stream is signed with it, so the
  // signature could only fail; say what is wrong instead.
  if (stream != key->device)
    return refuse(tenant, r, reject::kWrongDevice,
                  "key " + key->kid + " belongs to device " + key->device +
                      "; this envelope was sent for '" + printable(stream) +
                      "' (POST it to /v1/telemetry/" + key->device + ")");
  if (!detail::verify(*parsed, key->public_key))
    return refuse(tenant, r, reject::kBadSignature,
                  "the signature does not verify with key " + key->kid + " for tenant " + tenant +
                      " and stream " + stream +
                      ": it must cover [\"Signature1\", protected, external_aad, payload] with "
                      "external_aad the CBOR array [tenant, stream] of two text strings, signed "
                      "with this key's secret");
  auto batch = detail::decode_batch(parsed->payload, &err, &r.ignored_keys);
  if (!batch)
    return refuse(tenant, r,
                  err.reason == "bad_samples" ? reject::kBadSamples : reject::kBadPayload,
                  err.message);
  r.boot = batch->device.boot;
  r.seq = batch->seq;
  r.samples = batch->samples.size();
  r.decoded = true;
  if (batch->device.device != key->device || stream != key->device)
    return refuse(tenant, r, reject::kWrongDevice,
                  "key " + key->kid + " belongs to device " + key->device +
                      "; the batch is from '" + batch->device.device + "' sent to stream '" +
                      stream + "'");
  if (batch->samples.empty()) return refuse(tenant, r, reject::kBadSamples, "the batch is empty");
  if (batch->samples.size() > options_.max_samples)
    return refuse(tenant, r, reject::kOversized,
                  "the batch has " + std::to_string(batch->samples.size()) + " samples; at most " +
                      std::to_string(options_.max_samples) +
                      " per envelope (telemetry.max_batch_samples)");
  for (std::size_t i = 0; i < batch->samples.size(); ++i) {
    const auto& s = batch->samples[i];
    if (!std::isfinite(s.t) || !std::isfinite(s.bt) || !std::isfinite(s.et) ||
        !std::isfinite(s.ror) || (i > 0 && s.t <= batch->samples[i - 1].t))
      return refuse(tenant, r, reject::kBadSamples,
                    "sample " + std::to_string(i) + " is not finite or its time does not increase");
    // Readings a roaster's probes can make: a BT of 1e300 is a broken encoder, and would poison
    // sessions and reports.
    if (std::abs(s.bt) > kMaxReadingC || std::abs(s.et) > kMaxReadingC)
      return refuse(tenant, r, reject::kBadSamples,
                    "sample " + std::to_string(i) + " has BT " + value_text(s.bt) + ", ET " +
                        value_text(s.et) + ": outside what a roaster's probes read (±" +
                        seconds_text(kMaxReadingC) + " °C)");
  }
  // A clock ahead of the server's is wrong; one behind may be a batch that waited in a spool
  // (replays are the sequence window's business), up to max_age_s.
  if (!std::isfinite(batch->sent_at) || batch->sent_at - now > options_.max_skew_s)
    return refuse(tenant, r, reject::kClockSkew,
                  "the device's clock says " + seconds_text(batch->sent_at) + ", the server's " +
                      seconds_text(now) + " (more than " + seconds_text(options_.max_skew_s) +
                      " s ahead: set the device's clock, e.g. with NTP)");
  if (now - batch->sent_at > options_.max_age_s)
    return refuse(tenant, r, reject::kClockSkew,
                  "the batch was signed at " + seconds_text(batch->sent_at) + ", " +
                      seconds_text(now - batch->sent_at) +
                      " s ago (more than telemetry.max_age_s " + seconds_text(options_.max_age_s) +
                      "; or the device's clock is behind)");
  // Sample times near the batch's own: a sample from decades ago is a broken encoder. (A
  // simulated roaster at speed runs ahead of the wall clock, so the window is max_age_s both
  // ways.)
  for (std::size_t i = 0; i < batch->samples.size(); ++i) {
    const double t = batch->samples[i].t;
    if (std::abs(t - batch->sent_at) > options_.max_age_s)
      return refuse(tenant, r, reject::kBadSamples,
                    "sample " + std::to_string(i) + " is at " + value_text(t) + ", " +
                        value_text(std::abs(t - batch->sent_at)) +
                        " s from the batch's sent_at (at most telemetry.max_age_s " +
                        seconds_text(options_.max_age_s) +
                        "): device time is seconds since the epoch");
  }
  // A boot is a counter or milliseconds since the epoch: one in micro- or nanoseconds would make
  // every later boot in milliseconds look older (stale_boot) for good.
  const auto now_ms = static_cast<std::uint64_t>(std::max(now, 0.0) * 1000) +
                      static_cast<std::uint64_t>(options_.max_skew_s * 1000);
  if (batch->device.boot > now_ms)
    return refuse(tenant, r, reject::kBadPayload,
                  "boot " + std::to_string(batch->device.boot) +
                      " is later than now counted in milliseconds since the epoch (" +
                      std::to_string(now_ms) +
                      "): a boot is a counter or milliseconds since the epoch (not micro- or "
                      "nanoseconds), larger at every restart");
  if (batch->seq > static_cast<std::uint64_t>(INT64_MAX) - options_.window)
    return refuse(tenant, r, reject::kBadPayload,
                  "sequence number " + std::to_string(batch->seq) + " is out of range: at most " +
                      std::to_string(static_cast<std::uint64_t>(INT64_MAX) - options_.window) +
                      " (2^63 - 1 less telemetry.sequence_window)");

  // Boot epoch and sequence window, against what is stored.
  const auto id = std::make_pair(tenant, batch->device.device);
  {
    std::unique_lock lock(mu_);
    Window& w = windows_[id];
    if (!w.loaded) {
      lock.unlock();
      Window fresh;
      fresh.loaded = true;
      auto c = readers_.acquire();
      auto st = c->prepare(
          "SELECT boot, max(seq) FROM telemetry_all WHERE tenant = ? AND device = ? "
          "GROUP BY boot ORDER BY boot DESC LIMIT 1");
      st.bind(1, tenant).bind(2, batch->device.device);
      if (st.step()) {
        fresh.any = true;
        fresh.boot = static_cast<std::uint64_t>(st.int64(0));
        fresh.high = static_cast<std::uint64_t>(st.int64(1));
      }
      lock.lock();
      Window& again = windows_[id];
      if (!again.loaded) {
        fresh.last_stored = again.last_stored;  // recalled at start
        // A batch stored while this read ran (stored() moved the window on, not loaded) is
        // newer than what the read saw: kept, so the window never moves back.
        if (again.any && (!fresh.any || again.boot > fresh.boot)) {
          fresh.any = true;
          fresh.boot = again.boot;
          fresh.high = again.high;
        } else if (again.any && again.boot == fresh.boot) {
          fresh.high = std::max(fresh.high, again.high);
        }
        again = fresh;
      }
    }
    const Window cur = windows_[id];  // a copy: refuse() takes the lock again
    lock.unlock();
    if (cur.any && batch->device.boot < cur.boot) {
      a.stale = reject::kStaleBoot;
      a.stale_message =
          "device " + batch->device.device + " has booted since (boot " + std::to_string(cur.boot) +
          "); this envelope is from boot " + std::to_string(batch->device.boot) +
          ": a device's boots only grow, so a new boot must be above " + std::to_string(cur.boot);
    } else if (cur.any && batch->device.boot == cur.boot &&
               batch->seq + options_.window <= cur.high) {
      a.stale = reject::kStaleSequence;
      a.stale_message = "sequence " + std::to_string(batch->seq) + " is more than " +
                        std::to_string(options_.window) + " behind the highest stored (" +
                        std::to_string(cur.high) + ")";
    }
  }

  a.tenant = tenant;
  a.kid = key->kid;
  a.digest = common::sha256_hex(envelope);
  a.envelope = std::string(envelope);
  a.batch = std::move(*batch);
  return std::nullopt;
}

IngestResult Ingestor::check_only(const std::string& tenant, const std::string& stream,
                                  std::string_view envelope, double now) {
  Accepted a;
  a.r.dry_run = true;
  if (auto refused = check(tenant, stream, envelope, now, a)) return std::move(*refused);
  // What the store would find under the batch's key: this envelope, or other content.
  std::optional<std::string> stored_digest;
  {
    auto c = readers_.acquire();
    auto& st = c->cached(
        "SELECT digest FROM telemetry_all WHERE tenant = ? AND device = ? AND boot = ? AND seq = "
        "?");
    st.bind(1, tenant)
        .bind(2, a.batch.device.device)
        .bind(3, static_cast<std::int64_t>(a.batch.device.boot))
        .bind(4, static_cast<std::int64_t>(a.batch.seq));
    if (st.step()) stored_digest = st.text(0);
    st.reset();
  }
  if (stored_digest && *stored_digest != a.digest)
    return refuse(tenant, a.r, reject::kReplayedSequence, replayed(a.batch));
  if (!stored_digest && a.stale) return refuse(tenant, a.r, a.stale, a.stale_message);
  a.r.accepted = true;
  a.r.duplicate = stored_digest.has_value();
  return a.r;
}

void Ingestor::ingest_async(const std::string& tenant, const std::string& stream,
                            std::string_view envelope, double now, Done done) {
  auto a = std::make_unique<Accepted>();
  if (auto refused = check(tenant, stream, envelope, now, *a)) {
    done(std::move(*refused), nullptr);
    return;
  }
  a->done = std::move(done);
  bool submit = false;
  {
    std::lock_guard lock(stage_mu_);
    staged_.push_back(std::move(a));
    submit = !store_queued_;
    store_queued_ = true;
  }
  // One store command at a time waits in the ledger's queue; it takes every batch staged until
  // the writer runs it, so batches arriving together share one savepoint and one ledger event.
  if (!submit) return;
  try {
    submit_store();
  } catch (...) {
    fail_staged(std::current_exception());  // the ledger is closing: nothing will take them
  }
}

void Ingestor::answer(Accepted& a, IngestResult r, std::exception_ptr error) {
  try {
    a.done(std::move(r), error);
  } catch (const std::exception& e) {
    spdlog::error("telemetry: answering {} seq {} failed: {}", a.batch.device.device, a.batch.seq,
                  e.what());
  } catch (...) {
    spdlog::error("telemetry: answering {} seq {} failed", a.batch.device.device, a.batch.seq);
  }
}

void Ingestor::fail_staged(std::exception_ptr error) {
  std::vector<std::unique_ptr<Accepted>> failed;
  {
    std::lock_guard lock(stage_mu_);
    failed.swap(staged_);
    store_queued_ = false;
  }
  for (auto& a : failed) answer(*a, a->r, error);
}

void Ingestor::submit_store() {
  auto taken = std::make_shared<std::vector<std::unique_ptr<Accepted>>>();
  auto ran = std::make_shared<bool>(false);  // set on the writer, read after the group's answer
  auto command = [this, taken, ran](storage::Connection& c) -> std::vector<ledger::NewEvent> {
    *ran = true;
    {
      std::lock_guard lock(stage_mu_);
      taken->swap(staged_);
      store_queued_ = false;  // batches from now on go with the next command
    }
    sync_inbox(c);
    // One event per tenant of the group (a tenant's ledger stream holds only its own batches).
    std::map<std::string, json::array> stored;
    std::vector<ledger::NewEvent> events;
    try {
      for (auto& a : *taken) {
        const Batch& b = a->batch;
        const std::string key = inbox_key(a->tenant, b.device.device, b.device.boot, b.seq);
        std::optional<std::string> stored_digest;
        if (auto it = inbox_.find(key); it != inbox_.end()) {
          stored_digest = it->second;
        } else {
          auto& st = c.cached(
              "SELECT digest FROM telemetry_batches WHERE tenant = ? AND device = ? AND boot = ? "
              "AND seq = ?");
          st.bind(1, a->tenant)
              .bind(2, b.device.device)
              .bind(3, static_cast<std::int64_t>(b.device.boot))
              .bind(4, static_cast<std::int64_t>(b.seq));
          if (st.step()) stored_digest = st.text(0);
          st.reset();  // no statement left running across the savepoint's release
        }
        if (stored_digest) {
          a->outcome = *stored_digest == a->digest ? Accepted::Outcome::kDuplicate
                                                   : Accepted::Outcome::kReplayed;
          continue;
        }
        if (a->stale) {
          a->outcome = Accepted::Outcome::kStale;
          continue;
        }
        a->outcome = Accepted::Outcome::kStored;
        auto& ins = c.cached(
            "INSERT INTO telemetry_inbox (tenant, device, boot, seq, kid, digest, sent_at, "
            "received_at, first_t, last_t, count, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?)");
        ins.bind(1, a->tenant)
            .bind(2, b.device.device)
            .bind(3, static_cast<std::int64_t>(b.device.boot))
            .bind(4, static_cast<std::int64_t>(b.seq))
            .bind(5, a->kid)
            .bind(6, a->digest)
            .bind_real(7, b.sent_at)
            .bind(8, a->now_text)
            .bind_real(9, b.samples.front().t)
            .bind_real(10, b.samples.back().t)
            .bind(11, static_cast<std::int64_t>(b.samples.size()))
            .bind_blob(12, a->envelope);
        ins.step();
        ins.reset();
        inbox_.emplace(key, a->digest);
        stored[a->tenant].push_back(json::object{{"device", b.device.device},
                                                 {"boot", b.device.boot},
                                                 {"seq", b.seq},
                                                 {"kid", a->kid},
                                                 {"digest", a->digest},
                                                 {"samples", b.samples.size()},
                                                 {"first_t", b.samples.front().t},
                                                 {"last_t", b.samples.back().t}});
      }
      const auto now = std::chrono::steady_clock::now();
      if (inbox_.size() >= options_.inbox_batches ||
          (!inbox_.empty() && now - last_move_ >= options_.inbox_interval)) {
        move_inbox(c);
        last_move_ = now;
      }
      for (auto& [tenant, batches] : stored)
        events.push_back(ledger::NewEvent{tenant, "telemetry", "telemetry.batches",
                                          json::object{{"batches", std::move(batches)}}});
    } catch (...) {
      inbox_known_ = false;  // the savepoint takes this command's rows back: read it again
      throw;
    }
    return events;
  };
  ledger_.execute_async(std::move(command), [this, taken, ran](std::vector<ledger::Event> events,
                                                               std::exception_ptr error) {
    if (!*ran) {
      // The group failed before the command ran (the write lock not had in time, an earlier
      // item that failed the group): the batches are still staged, and no command is left to
      // take them.
      fail_staged(error ? error
                        : std::make_exception_ptr(std::logic_error(
                              "telemetry: the store command was answered without running")));
      return;
    }
    for (auto& a : *taken) {
      if (error) {
        answer(*a, a->r, error);  // not accepted: the store failed, nothing of it is stored
        continue;
      }
      try {
        switch (a->outcome) {
          case Accepted::Outcome::kReplayed:
            answer(*a, refuse(a->tenant, a->r, reject::kReplayedSequence, replayed(a->batch)),
                   nullptr);
            break;
          case Accepted::Outcome::kStale:
            answer(*a, refuse(a->tenant, a->r, a->stale, a->stale_message), nullptr);
            break;
          case Accepted::Outcome::kDuplicate:
          case Accepted::Outcome::kStored: {
            std::int64_t seq = 0;
            for (const auto& e : events)
              if (e.tenant == a->tenant) seq = e.seq;
            answer(*a, stored(*a, seq), nullptr);
            break;
          }
        }
      } catch (...) {
        answer(*a, a->r, std::current_exception());  // every batch gets an answer
      }
    }
  });
}

std::string Ingestor::inbox_key(const std::string& tenant, const std::string& device,
                                std::uint64_t boot, std::uint64_t seq) {
  std::string key;
  key.reserve(tenant.size() + device.size() + 24);
  key.append(tenant).push_back('\0');
  key.append(device).push_back('\0');
  key.append(std::to_string(boot)).push_back('\0');
  key.append(std::to_string(seq));
  return key;
}

void Ingestor::sync_inbox(storage::Connection& c) {
  // data_version changes when another connection (another kiln process on this database) has
  // committed since this one last looked: its batches may be in the inbox, or it moved them. A
  // rollback of our own (the group failing at its commit, or the store's savepoint taken back
  // after it ran, e.g. its event refused) leaves keys here that are not in the table: the writer
  // counts rollbacks before it runs anything else.
  auto& dv = c.cached("PRAGMA data_version");
  dv.step();
  const std::int64_t version = dv.int64(0);
  dv.reset();
  const std::uint64_t rollbacks = ledger_.rollbacks();
  if (inbox_known_ && version == inbox_data_version_ && rollbacks == inbox_rollbacks_) return;
  inbox_known_ = false;  // until the whole inbox is read
  inbox_.clear();
  auto& st = c.cached("SELECT tenant, device, boot, seq, digest FROM telemetry_inbox");
  while (st.step())
    inbox_.emplace(inbox_key(st.text(0), st.text(1), static_cast<std::uint64_t>(st.int64(2)),
                             static_cast<std::uint64_t>(st.int64(3))),
                   st.text(4));
  st.reset();
  inbox_known_ = true;
  inbox_data_version_ = version;
  inbox_rollbacks_ = rollbacks;
}

void Ingestor::move_inbox(storage::Connection& c) {
  // In key order, so that each device's index leaves are written once for the whole pass. The
  // order is made from the keys alone (an ORDER BY would sort whole rows, samples included, in
  // memory); the unique key of telemetry_batches is the last word on duplicates.
  struct Row {
    std::string tenant, device;
    std::int64_t boot, seq, rowid;
  };
  std::vector<Row> rows;
  rows.reserve(inbox_.size());
  auto& keys = c.cached("SELECT tenant, device, boot, seq, rowid FROM telemetry_inbox");
  while (keys.step())
    rows.push_back(Row{keys.text(0), keys.text(1), keys.int64(2), keys.int64(3), keys.int64(4)});
  keys.reset();
  std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) {
    return std::tie(x.tenant, x.device, x.boot, x.seq) <
           std::tie(y.tenant, y.device, y.boot, y.seq);
  });
  // OR FAIL, not the default ABORT: a statement that may write several rows and abort halfway
  // gets a statement journal inside the store's savepoint, which cost half of the pass (journal
  // pages allocated and released per row). One row per statement, so FAIL undoes nothing it would
  // have to; a conflict still throws, and the savepoint takes the whole pass back.
  auto& move = c.cached(
      "INSERT OR FAIL INTO telemetry_batches (tenant, device, boot, seq, kid, digest, sent_at, "
      "received_at, first_t, last_t, count, samples, envelope) SELECT tenant, device, boot, seq, "
      "kid, digest, sent_at, received_at, first_t, last_t, count, samples, envelope FROM "
      "telemetry_inbox WHERE rowid = ?");
  for (const auto& r : rows) {
    move.bind(1, r.rowid);
    move.step();
    move.reset();
  }
  auto& clear = c.cached("DELETE FROM telemetry_inbox");
  clear.step();
  clear.reset();
  inbox_.clear();
  ++inbox_moves_;
}

IngestResult Ingestor::stored(Accepted& a, std::int64_t ledger_seq) {
  IngestResult r = a.r;
  const Batch& b = a.batch;
  r.accepted = true;
  r.duplicate = a.outcome == Accepted::Outcome::kDuplicate;
  if (r.duplicate) {
    ++duplicates_;
    return r;
  }
  r.ledger_seq = ledger_seq;
  {
    std::lock_guard lock(mu_);
    Window& w = windows_[std::make_pair(a.tenant, b.device.device)];
    if (!w.any || b.device.boot > w.boot) {
      w.any = true;
      w.boot = b.device.boot;
      w.high = b.seq;
    } else if (b.device.boot == w.boot) {
      w.high = std::max(w.high, b.seq);
    }
    w.last_stored =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  ++batches_;
  samples_ += static_cast<std::int64_t>(b.samples.size());
  if (on_stored_) {
    try {
      on_stored_(a.tenant, b);
    } catch (const std::exception& e) {
      spdlog::error("telemetry: after storing {} seq {}: {}", b.device.device, b.seq, e.what());
    }
  }
  return r;
}

IngestResult Ingestor::ingest(const std::string& tenant, const std::string& stream,
                              std::string_view envelope, double now) {
  struct Outcome {
    IngestResult result;
    std::exception_ptr error;
    std::atomic<bool> ready{false};
  };
  auto out = std::make_shared<Outcome>();
  ingest_async(tenant, stream, envelope, now, [out](IngestResult r, std::exception_ptr e) {
    out->result = std::move(r);
    out->error = e;
    out->ready.store(true, std::memory_order_release);
    out->ready.notify_one();
  });
  out->ready.wait(false, std::memory_order_acquire);
  if (out->error) std::rethrow_exception(out->error);
  return std::move(out->result);
}

std::map<std::string, std::int64_t> Ingestor::rejected() const {
  std::lock_guard lock(mu_);
  return rejected_;
}

void Ingestor::expose(std::string& out) const {
  out +=
      "# HELP kiln_telemetry_batches_total Signed telemetry batches stored.\n"
      "# TYPE kiln_telemetry_batches_total counter\nkiln_telemetry_batches_total " +
      std::to_string(batches_.load()) +
      "\n# HELP kiln_telemetry_samples_total Telemetry samples stored.\n"
      "# TYPE kiln_telemetry_samples_total counter\nkiln_telemetry_samples_total " +
      std::to_string(samples_.load()) +
      "\n# HELP kiln_telemetry_duplicates_total Envelopes received again (stored once).\n"
      "# TYPE kiln_telemetry_duplicates_total counter\nkiln_telemetry_duplicates_total " +
      std::to_string(duplicates_.load()) +
      "\n# HELP kiln_telemetry_rejected_total Envelopes refused, by reason.\n"
      "# TYPE kiln_telemetry_rejected_total counter\n";
  std::map<std::string, std::int64_t> by_reason;
  for (auto r : reject::all()) by_reason[std::string(r)] = 0;
  for (const auto& [k, v] : rejected()) by_reason[k] = v;
  for (const auto& [k, v] : by_reason)
    out += "kiln_telemetry_rejected_total{reason=\"" + k + "\"} " + std::to_string(v) + "\n";
  out +=
      "# HELP kiln_telemetry_last_batch_timestamp_seconds When a device's last batch was stored "
      "(Unix time; every device that ever sent one): alert on time() minus it.\n"
      "# TYPE kiln_telemetry_last_batch_timestamp_seconds gauge\n";
  std::lock_guard lock(mu_);
  for (const auto& [key, w] : windows_)
    if (w.last_stored > 0) {
      char when[32];
      std::snprintf(when, sizeof when, "%.3f", w.last_stored);
      out += "kiln_telemetry_last_batch_timestamp_seconds{tenant=\"" +
             runtime::prometheus_label(key.first) + "\",device=\"" +
             runtime::prometheus_label(key.second) + "\"} " + when + "\n";
    }
}

}  // namespace kiln::telemetry
