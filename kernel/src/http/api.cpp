#include "http/api.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "audio/encode.hpp"
#include "common/sha256.hpp"
#include "kiln/abi.hpp"
#include "kiln/nodes/tts_engine.hpp"
#include "missions/worker.hpp"
#include "runtime/tts_tools.hpp"
#include "storage/sqlite.hpp"
#include "telemetry/session_views.hpp"

namespace kiln::http {
namespace json = boost::json;
using missions::Role;

namespace {

json::value schema(const char* text) {
  return json::parse(text);
}

const char* kMissionSchema =
    R"({"type": "object", "required": ["id", "tenant", "template", "state"],
  "properties": {"id": {"type": "string"}, "tenant": {"type": "string"},
    "template": {"type": "string"}, "inputs": {"type": "object"},
    "state": {"type": "string", "enum": ["PENDING", "RUNNING", "RETRY", "QUARANTINED", "BLOCKED",
                                         "DONE", "FAILED", "CANCELED"]},
    "decision": {"type": "string"}, "reason": {"type": "string"},
    "idempotency_key": {"type": ["string", "null"]}, "created_by": {"type": "string"},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"},
    "not_before": {"type": ["string", "null"]}, "lease_owner": {"type": ["string", "null"]},
    "lease_until": {"type": ["string", "null"]}, "claims": {"type": "integer"},
    "last_seq": {"type": "integer"},
    "steps": {"type": "array", "items": {"type": "object", "properties": {
      "step": {"type": "string"}, "tool": {"type": "string"}, "approval": {"type": "string"},
      "state": {"type": "string"}, "attempts": {"type": "integer"},
      "approved_by": {"type": ["string", "null"]},
      "output": {"description": "the tool's output; null in GET /v1/missions unless ?outputs=true"},
      "error": {"type": ["object", "null"], "description": "why its last attempt failed",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
          "retryable": {"type": "boolean"}, "details": {}}},
      "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
      "artifacts": {"type": "array", "description": "files the step kept: GET /v1/missions/{id}/artifacts/{step}/{name}",
        "items": {"type": "object", "required": ["name", "media_type", "bytes", "sha256"],
          "properties": {"name": {"type": "string"}, "media_type": {"type": "string"},
            "bytes": {"type": "integer"}, "sha256": {"type": "string"},
            "created_at": {"type": "string"}}}}}}}}})";

std::int64_t int_query(const Request& r, const char* name, std::int64_t dflt, std::int64_t min,
                       std::int64_t max) {
  auto it = r.query.find(name);
  if (it == r.query.end()) return dflt;  // (given empty, ?limit=, the router refused it)
  try {
    std::size_t used = 0;
    auto v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= min && v <= max) return v;
  } catch (const std::exception&) {
  }
  throw HttpError{422, "invalid_request",
                  std::string("query parameter '") + name + "' must be an integer from " +
                      std::to_string(min) + " to " + std::to_string(max),
                  json::object{{"field", std::string("query.") + name}}};
}

// A list's page size (`limit`), and its bounds as /openapi.json says them.
constexpr std::int64_t kPageMax = 1000;
std::int64_t page_limit(const Request& r) {
  return int_query(r, "limit", 100, 1, kPageMax);
}
json::value page_limit_schema() {
  return json::object{{"minimum", 1}, {"maximum", kPageMax}};
}

// A boolean query parameter, read alike on every route: true or 1, false or 0.
bool bool_query(const Request& r, const char* name, bool dflt) {
  auto it = r.query.find(name);
  if (it == r.query.end()) return dflt;
  if (it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  throw HttpError{422, "invalid_request",
                  std::string("query parameter '") + name + "' must be true, false, 1 or 0, not '" +
                      it->second + "'",
                  json::object{{"field", std::string("query.") + name}}};
}

// The same request's next page (RFC 8288): its query with `cursor` set to `value`, as a Link
// header; lists are newest-first arrays, so the header is where a client learns there is more.
void link_next_page(Response& res, const Request& req, const std::string& cursor,
                    const std::string& value) {
  auto query = req.query;
  query[cursor] = value;
  std::string target = req.target.substr(0, req.target.find('?'));  // as the client encoded it
  char sep = '?';
  for (const auto& [name, v] : query) {
    target += sep + url_encode(name) + '=' + url_encode(v);
    sep = '&';
  }
  res.headers.emplace_back("Link", "<" + target + ">; rel=\"next\"");
}

// A list read whose query the service refuses (a state that is none, a cursor that is no item):
// a 422 naming the query parameter, as other query refusals are.
template <class List>
auto listed(const List& list) {
  try {
    return list();
  } catch (const missions::MissionError& e) {
    if (e.code() != missions::MissionError::Code::kInvalidInput) throw;
    throw HttpError{422, "invalid_request", e.what(),
                    json::object{{"field", "query." + e.field()}}};
  }
}

std::string note_of(const Request& r) {
  if (r.json.is_object())
    if (auto* n = r.json.as_object().if_contains("reason"); n && n->is_string())
      return std::string(n->as_string());
  return "";
}

// The key's tenant's session {id}; another tenant's answers 404 like a missing one.
telemetry::SessionInfo session_or_404(const runtime::Kernel& k, const Request& req) {
  auto s = telemetry::Sessionizer::get(k.storage_path(), req.tenant, req.params.at("id"));
  if (!s)
    throw HttpError{404, "not_found", telemetry::no_session(req.params.at("id"), req.tenant),
                    json::object{{"session", req.params.at("id")}}};
  return *s;
}

// POST /v1/sessions/{id}:mark|:weigh: the change, then the session as it is now (the report
// mission the change started included).
Response roaster_change(runtime::Kernel& k, Request& req, const char* action) {
  k.telemetry().sessions().change(req.tenant, req.params.at("id"), action, req.json.as_object(),
                                  *req.actor);
  return Response::json(
      200, telemetry::Sessionizer::described(k.storage_path(), session_or_404(k, req)));
}

// The request's If-None-Match names `etag` (or is "*"): the client has this answer already.
bool has_copy(const Request& req, const std::string& etag) {
  const std::string wanted = req.header("if-none-match");
  return wanted == "*" || wanted.find(etag) != std::string::npos;
}

// A file a mission step kept (the roast report's spoken summary), with its SHA-256 as the ETag:
// a client that has it already (If-None-Match) gets 304 without the bytes.
Response artifact_response(const missions::StoredArtifact& a, const Request& req) {
  const std::string etag = "\"" + a.info.sha256 + "\"";
  Response out;
  out.content_type = a.info.media_type;
  out.headers.emplace_back("ETag", etag);
  if (has_copy(req, etag)) {
    out.status = 304;
    return out;
  }
  std::string file;
  for (char c : a.info.name)
    file += (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) ? '_' : c;
  out.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + file + "\"");
  out.body = a.data;
  return out;
}

// An answer that stays the same while its data does (a closed session's samples or report),
// with a hash of its bytes as the ETag: a dashboard polling with If-None-Match gets 304 without
// them. no-cache: a client asks each time, as an open session's answer changes.
Response with_etag(Response res, const Request& req) {
  const std::string etag = "\"" + common::sha256_hex(res.body).substr(0, 32) + "\"";
  res.headers.emplace_back("ETag", etag);
  res.headers.emplace_back("Cache-Control", "no-cache");
  if (has_copy(req, etag)) {
    res.status = 304;
    res.body.clear();
  }
  return res;
}

const char* kActionBody = R"({"type": "object", "additionalProperties": false,
  "properties": {"reason": {"type": "string", "maxLength": 2000}}})";

}  // namespace

int tool_error_status(const std::string& code) {
  if (code == error_code::kInvalidInput || code == error_code::kInvalidRequest) return 422;
  if (code == error_code::kUnknownTool || code == error_code::kNotFound ||
      code == nodes::tts_error::kUnknownVoice)
    return 404;
  if (code == nodes::tts_error::kInputTooLarge) return 413;
  if (code == nodes::tts_error::kVoiceUnavailable) return 503;
  if (code == error_code::kRateLimited) return 429;
  if (code == error_code::kForbidden) return 403;
  if (code == error_code::kTimeout) return 504;
  if (code == error_code::kUnavailable || code == error_code::kProviderUnavailable) return 503;
  if (code == error_code::kInternal) return 500;
  return 502;  // a tool's own error code: the upstream (the tool) failed
}

// Speech streamed sentence by sentence (stream_format "audio", wav or pcm): the engine runs on
// its own thread; the response starts once the first sentence is spoken (so that bad input still
// gets a proper error status), then every further sentence is sent as one HTTP chunk.
// Streams running now; each holds a thread of the blocking pool while it runs.
static std::atomic<int> g_speech_streams{0};
static constexpr int kMaxSpeechStreams = 4;

// Speech streamed sentence by sentence (stream_format "audio", wav or pcm): the engine runs on
// its own thread; the response starts once the first sentence is spoken (so that bad input still
// gets a proper error status), then every further sentence is sent as one HTTP chunk. A failure
// after the first sentence ends the connection without the final chunk. Each sentence is waited
// for at most tool_strategy.timeout_ms, as tts.synthesize is: an engine that hangs costs a 504
// (or a cut stream) and its stream slot, not a server thread and the server's shutdown.
static Response stream_speech(const runtime::Kernel& k, const json::object& b,
                              const std::string& format) {
  if (format != "wav" && format != "pcm")
    throw HttpError{422, "unsupported_stream_format",
                    "stream_format 'audio' streams wav or pcm; response_format is '" + format + "'",
                    json::object{{"field", "body.response_format"}}};
  auto engine = k.node<nodes::TtsEngine>();
  if (!engine)
    throw HttpError{503, error_code::kProviderUnavailable, "no tts_engine node is running"};
  nodes::SpeechRequest sreq;
  sreq.text = std::string(b.at("input").as_string());
  const std::string voice(b.at("voice").as_string());
  if (!runtime::is_openai_voice_name(voice)) sreq.voice = voice;
  if (auto* sp = b.if_contains("speed")) sreq.speed = sp->to_number<double>();
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> chunks;
    bool done = false;
    bool cancelled = false;
    int sample_rate = 0;
    std::string voice;
    std::optional<ToolError> error;
  };
  auto st = std::make_shared<State>();
  // Counts this stream until the synthesis thread ends; the count is the admission limit.
  if (g_speech_streams.fetch_add(1) >= kMaxSpeechStreams) {
    g_speech_streams.fetch_sub(1);
    throw HttpError{503, error_code::kUnavailable,
                    "too many speech streams at once (" + std::to_string(kMaxSpeechStreams) +
                        "); retry, or leave stream_format out"};
  }
  const std::chrono::milliseconds timeout(k.config().get_int("tool_strategy.timeout_ms"));
  // OpenAI's pcm is 24 kHz: each sentence raised to it (wav says its own rate in its header).
  const bool openai_pcm = format == "pcm";
  std::thread([st, engine, sreq, openai_pcm] {
    auto r = runtime::synthesize(*engine, sreq, [&](const nodes::AudioChunk& c) {
      std::lock_guard lock(st->mu);
      st->sample_rate = openai_pcm ? audio::kOpenAiPcmRate : c.sample_rate;
      if (st->voice.empty()) st->voice = std::string(c.voice);
      st->chunks.push_back(audio::pcm_bytes(
          openai_pcm ? audio::resample(c.samples, c.sample_rate, audio::kOpenAiPcmRate)
                     : c.samples));
      st->cv.notify_all();
      return !st->cancelled;
    });
    {
      std::lock_guard lock(st->mu);
      if (!r.ok()) st->error = r.error();
      st->done = true;
      st->cv.notify_all();
    }
    g_speech_streams.fetch_sub(1);
  }).detach();
  int rate = 0;
  std::string spoken_by;
  {
    std::unique_lock lock(st->mu);
    if (!st->cv.wait_for(lock, timeout, [&] { return st->done || !st->chunks.empty(); })) {
      st->cancelled = true;  // should the engine come back, it stops after that sentence
      throw HttpError{504, error_code::kTimeout,
                      "the tts_engine node spoke nothing within " +
                          std::to_string(timeout.count()) +
                          " ms (tool_strategy.timeout_ms); its stream stays counted until it "
                          "returns"};
    }
    if (st->chunks.empty() && st->error)
      throw HttpError{tool_error_status(st->error->code), st->error->code, st->error->message,
                      st->error->details};
    rate = st->sample_rate;
    spoken_by = st->voice;
  }
  // Whatever happens to the response (sent, never sent, client gone), the engine stops once the
  // last copy of the stream function is gone.
  std::shared_ptr<void> stop_engine(nullptr, [st](void*) {
    std::lock_guard lock(st->mu);
    st->cancelled = true;
  });
  Response out;
  out.content_type = audio::media_type(format, rate);
  out.headers.emplace_back("X-Kiln-Voice", spoken_by);
  out.stream = [st, format, rate, stop_engine, timeout](const ChunkWriter& write) {
    if (format == "wav" && !write(audio::wav_stream_header(rate))) return;
    for (;;) {
      std::string chunk;
      {
        std::unique_lock lock(st->mu);
        if (!st->cv.wait_for(lock, timeout, [&] { return st->done || !st->chunks.empty(); })) {
          st->cancelled = true;
          throw std::runtime_error("speech stalled: no sentence within " +
                                   std::to_string(timeout.count()) +
                                   " ms (tool_strategy.timeout_ms)");
        }
        if (st->chunks.empty()) {
          if (st->error && !st->cancelled)
            throw std::runtime_error("speech failed after it started: " + st->error->message);
          return;
        }
        chunk = std::move(st->chunks.front());
        st->chunks.pop_front();
      }
      if (!write(chunk)) {
        std::lock_guard lock(st->mu);
        st->cancelled = true;  // the engine stops after its current sentence
        return;
      }
    }
  };
  return out;
}

// Where the server's files are is the administrator's to know: other keys see a file's name
// (member `member` of each item), not its directory.
json::array file_names_only(json::array items, const char* member, const Request& req) {
  if (req.actor && req.actor->role >= Role::kAdmin) return items;
  for (auto& item : items)
    if (auto* v = item.as_object().if_contains(member); v && v->is_string())
      *v = std::filesystem::path(std::string(v->as_string())).filename().string();
  return items;
}

json::array plugins_json(const runtime::Kernel& k) {
  json::array arr;
  for (const auto& p : k.registry().plugins()) {
    json::array nodes, tools;
    for (const auto& n : p.nodes) nodes.push_back(json::value(n));
    for (const auto& t : p.tools) tools.push_back(json::value(t));
    arr.push_back(json::object{{"name", p.name},
                               {"version", p.version},
                               {"license", p.license},
                               {"description", p.description},
                               {"file", p.file.string()},
                               {"sha256", p.sha256},
                               {"nodes", nodes},
                               {"tools", tools}});
  }
  return arr;
}

json::array nodes_json(const runtime::Kernel& k) {
  json::array arr;
  for (const auto& s : k.node_status()) {
    json::array avail;
    for (const auto& a : s.available) avail.push_back(json::value(a));
    arr.push_back(json::object{{"kind", s.kind},
                               {"selected", s.selected},
                               {"source", s.source.describe()},
                               {"default", s.is_default},
                               {"provider", s.entry ? s.entry->provider : ""},
                               {"gate", s.entry        ? gates::to_string(s.gate.state)
                                        : s.is_default ? "off (default node not loaded)"
                                                       : "unknown node"},
                               {"gate_detail", s.gate.reason},
                               {"available", avail}});
  }
  return arr;
}

json::array gates_json(const runtime::Kernel& k) {
  json::array arr;
  for (const auto& d : k.kinds())
    for (const auto& n : k.registry().nodes()) {
      if (n.kind != d.kind) continue;
      auto g = k.gates().check(n, n.name == d.default_node, d.contract_version);
      arr.push_back(json::object{{"kind", n.kind},
                                 {"node", n.name},
                                 {"provider", n.provider},
                                 {"selected", k.config().get_string("nodes." + d.kind) == n.name},
                                 {"gate", gates::to_string(g.state)},
                                 {"detail", g.reason},
                                 {"ran_at", g.record ? g.record->ran_at : ""}});
    }
  return arr;
}

json::array tools_json(const runtime::Kernel& k) {
  json::array arr;
  for (const auto& t : k.registry().tools())
    arr.push_back(json::object{{"name", t.name},
                               {"provider", t.provider},
                               {"description", t.description},
                               {"actuates", t.actuates},
                               {"input_schema", t.input_schema},
                               {"output_schema", t.output_schema}});
  return arr;
}

Router build_api(ApiContext& ctx) {
  Router r;
  runtime::Kernel& k = *ctx.kernel;
  const json::value plugins_schema = schema(R"({"type": "array", "items": {"type": "object",
      "required": ["name", "version", "license", "description", "file", "sha256", "nodes", "tools"],
      "properties": {"name": {"type": "string"}, "version": {"type": "string"},
        "license": {"type": "string"}, "description": {"type": "string"},
        "file": {"type": "string", "description": "the shared library loaded: its path for admin keys, its name for others"},
        "sha256": {"type": "string", "description": "of that file, as gate records name it"},
        "nodes": {"type": "array", "items": {"type": "string"}},
        "tools": {"type": "array", "items": {"type": "string"}}}}})");
  const json::value nodes_schema = schema(R"({"type": "array", "items": {"type": "object",
      "required": ["kind", "selected", "source", "default", "provider", "gate", "gate_detail",
                   "available"],
      "properties": {"kind": {"type": "string"},
        "selected": {"type": "string", "description": "the node the config selects"},
        "source": {"type": "string", "description": "where that was set: a file, env, default"},
        "default": {"type": "boolean"}, "provider": {"type": "string"},
        "gate": {"type": "string",
                 "description": "the selected node's: default, passed, not gated, stale, failed"},
        "gate_detail": {"type": "string"},
        "available": {"type": "array", "items": {"type": "string"}}}}})");
  const json::value gates_schema = schema(R"({"type": "array", "items": {"type": "object",
      "required": ["kind", "node", "provider", "selected", "gate", "detail", "ran_at"],
      "properties": {"kind": {"type": "string"}, "node": {"type": "string"},
        "provider": {"type": "string"}, "selected": {"type": "boolean"},
        "gate": {"type": "string"}, "detail": {"type": "string"},
        "ran_at": {"type": "string", "description": "when the gate last ran; empty if never"}}}})");
  const json::value tools_schema = schema(R"({"type": "array", "items": {"type": "object",
      "required": ["name", "provider", "description", "actuates", "input_schema", "output_schema"],
      "properties": {"name": {"type": "string"}, "provider": {"type": "string"},
        "description": {"type": "string"},
        "actuates": {"type": "boolean", "description": "moves a machine: approval-gated"},
        "input_schema": {"description": "JSON Schema of the input"},
        "output_schema": {"description": "JSON Schema of the output"}}}})");

  // ---- Operations -----------------------------------------------------------------------------
  r.add({"GET",
         "/health",
         "health",
         "Process liveness",
         "operations",
         std::nullopt,
         0,
         nullptr,
         schema(R"({"type": "object", "required": ["status"],
                    "properties": {"status": {"const": "ok"}}})"),
         200,
         "application/json",
         {},
         false,
         [](Request&) {
           Response res;  // the hottest route: no JSON serialization per request
           res.body = R"({"status":"ok"})";
           return res;
         }});
  r.add({"GET",
         "/ready",
         "ready",
         "Readiness: plugins loaded, nodes resolved, storage open",
         "operations",
         std::nullopt,
         0,
         nullptr,
         schema(R"({"type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string"}}})"),
         200,
         "application/json",
         {},
         false,
         [&ctx, &k](Request&) {
           if (!ctx.ready.load())
             return error(503, "not_ready", "kiln is starting: storage is not open yet");
           // The newest group commit failed and none has committed since: writes are refused.
           if (auto why = k.sqlite_ledger().failing())
             return error(503, "storage_failing",
                          "storage is refusing writes (" + *why +
                              "); it recovers by itself once the cause is gone (free disk "
                              "space at storage.path)");
           return Response::json(200, json::object{{"status", "ready"}});
         }});
  r.add({"GET",
         "/metrics",
         "metrics",
         "Prometheus metrics (text exposition 0.0.4)",
         "operations",
         std::nullopt,
         0,
         nullptr,
         schema(R"({"type": "string"})"),
         200,
         "text/plain; version=0.0.4",
         {},
         false,
         [&ctx, &k](Request&) {
           std::string out;
           expose_process(out);
           if (ctx.metrics) ctx.metrics->expose(out);
           if (ctx.router) ctx.router->expose(out);
           k.tool_metrics().expose(out);
           k.plugin_metrics().expose(out);
           try {
             k.telemetry().ingestor().expose(out);
           } catch (const std::exception&) {
             // storage not open yet
           }
           // 1 when GET /ready answers 200, for an alert that does not need a second probe.
           const bool ready = ctx.ready.load() && !k.sqlite_ledger().failing();
           out +=
               "# HELP kiln_ready 1 when the server is ready (GET /ready answers 200).\n"
               "# TYPE kiln_ready gauge\nkiln_ready ";
           out += ready ? "1\n" : "0\n";
           out += "# HELP kiln_missions Missions by state.\n# TYPE kiln_missions gauge\n";
           try {
             storage::Connection c(k.storage_path(), storage::Connection::Mode::kReadOnly);
             std::map<std::string, std::int64_t> by_state;
             for (const char* s : {"PENDING", "RUNNING", "RETRY", "QUARANTINED", "BLOCKED", "DONE",
                                   "FAILED", "CANCELED"})
               by_state[s] = 0;
             auto st = c.prepare("SELECT state, count(*) FROM missions GROUP BY state");
             while (st.step()) by_state[st.text(0)] = st.int64(1);
             for (const auto& [s, n] : by_state)
               out += "kiln_missions{state=\"" + s + "\"} " + std::to_string(n) + "\n";
             // Roasts under way (open) and recorded (closed), for an alert on a session left
             // open and a view of the roasting day.
             std::map<std::string, std::int64_t> sessions{{"open", 0}, {"closed", 0}};
             auto ss = c.prepare("SELECT state, count(*) FROM telemetry_sessions GROUP BY state");
             while (ss.step()) sessions[ss.text(0)] = ss.int64(1);
             out +=
                 "# HELP kiln_telemetry_sessions Roast sessions by state, all tenants.\n"
                 "# TYPE kiln_telemetry_sessions gauge\n";
             for (const auto& [s, n] : sessions)
               out += "kiln_telemetry_sessions{state=\"" + s + "\"} " + std::to_string(n) + "\n";
             auto le = c.prepare("SELECT count(*) FROM ledger");
             le.step();
             out +=
                 "# HELP kiln_ledger_events Events in the ledger.\n"
                 "# TYPE kiln_ledger_events gauge\nkiln_ledger_events " +
                 std::to_string(le.int64(0)) + "\n";
             // Disk: the database and its write-ahead log, and the missions' files in it (what
             // retention, missions.keep_files, releases).
             auto mf = c.prepare("SELECT count(*), coalesce(sum(bytes), 0) FROM mission_artifacts");
             mf.step();
             out +=
                 "# HELP kiln_mission_files Files missions keep (spoken summaries, report pages).\n"
                 "# TYPE kiln_mission_files gauge\nkiln_mission_files " +
                 std::to_string(mf.int64(0)) +
                 "\n# HELP kiln_mission_files_bytes Their size.\n"
                 "# TYPE kiln_mission_files_bytes gauge\nkiln_mission_files_bytes " +
                 std::to_string(mf.int64(1)) +
                 "\n# HELP kiln_database_bytes The database file and its write-ahead log.\n"
                 "# TYPE kiln_database_bytes gauge\n";
             for (const auto& [file, suffix] :
                  {std::pair{"database", ""}, std::pair{"wal", "-wal"}}) {
               std::error_code ec;
               const auto size = std::filesystem::file_size(k.storage_path().string() + suffix, ec);
               out += "kiln_database_bytes{file=\"" + std::string(file) + "\"} " +
                      std::to_string(ec ? 0 : size) + "\n";
             }
             if (const int intact = ctx.ledger_intact.load(); intact >= 0)
               out +=
                   "# HELP kiln_ledger_intact 1 when the newest 10,000 ledger events chained "
                   "and hashed as they should at start, 0 when the chain was broken (`kiln "
                   "ledger verify` checks all of it).\n"
                   "# TYPE kiln_ledger_intact gauge\nkiln_ledger_intact " +
                   std::to_string(intact) + "\n";
             // This process's writer: group commits, events it wrote, and audit events (tool
             // calls) it could not store — those are logged, and an operator alerts on this.
             auto& l = k.sqlite_ledger();
             const auto [groups, written] = l.commit_stats();
             out +=
                 "# HELP kiln_ledger_commits_total Group commits by this process.\n"
                 "# TYPE kiln_ledger_commits_total counter\nkiln_ledger_commits_total " +
                 std::to_string(groups) +
                 "\n# HELP kiln_ledger_syncs_total WAL syncs (fdatasync) by this process's "
                 "ledger; one covers every group committed while the one before it ran.\n"
                 "# TYPE kiln_ledger_syncs_total counter\nkiln_ledger_syncs_total " +
                 std::to_string(l.syncs()) +
                 "\n# HELP kiln_ledger_checkpoints_total WAL checkpoints by this process's "
                 "ledger (its checkpointer thread, or the writer past its WAL bound).\n"
                 "# TYPE kiln_ledger_checkpoints_total counter\nkiln_ledger_checkpoints_total " +
                 std::to_string(l.checkpoints()) +
                 "\n# HELP kiln_ledger_appended_total Ledger events written by this process.\n"
                 "# TYPE kiln_ledger_appended_total counter\nkiln_ledger_appended_total " +
                 std::to_string(written) +
                 "\n# HELP kiln_ledger_audit_failures_total Audit events (tool calls, refused "
                 "telemetry) that could not be stored.\n"
                 "# TYPE kiln_ledger_audit_failures_total counter\n"
                 "kiln_ledger_audit_failures_total " +
                 std::to_string(l.async_failures()) +
                 "\n# HELP kiln_ledger_failed_groups_total Group commits that failed (a full "
                 "disk, an I/O error): their writes were refused.\n"
                 "# TYPE kiln_ledger_failed_groups_total counter\n"
                 "kiln_ledger_failed_groups_total " +
                 std::to_string(l.failed_groups()) + "\n";
           } catch (const std::exception&) {
             // storage not open yet: the families are simply absent
           }
           return Response::text(200, std::move(out), "text/plain; version=0.0.4");
         }});
  r.add({"GET",
         "/openapi.json",
         "openapi",
         "This document",
         "operations",
         std::nullopt,
         0,
         nullptr,
         schema(R"({"type": "object"})"),
         200,
         "application/json",
         {},
         false,
         [&ctx](Request&) {
           std::call_once(ctx.openapi_once,
                          [&] { ctx.openapi = json::serialize(ctx.router->openapi(kVersion)); });
           return Response::text(200, ctx.openapi, "application/json");
         }});

  // ---- Kernel ---------------------------------------------------------------------------------
  r.add({"GET",
         "/v1/plugins",
         "listPlugins",
         "Loaded plugins",
         "kernel",
         Role::kViewer,
         0,
         nullptr,
         plugins_schema,
         200,
         "application/json",
         {},
         false,
         [&k](Request& req) {
           return Response::json(200, file_names_only(plugins_json(k), "file", req));
         }});
  r.add({"GET",
         "/v1/nodes",
         "listNodes",
         "Selected node and gate state per kind",
         "kernel",
         Role::kViewer,
         0,
         nullptr,
         nodes_schema,
         200,
         "application/json",
         {},
         false,
         [&k](Request&) { return Response::json(200, nodes_json(k)); }});
  r.add({"GET",
         "/v1/gates",
         "listGates",
         "Every node with its gate state",
         "kernel",
         Role::kViewer,
         0,
         nullptr,
         gates_schema,
         200,
         "application/json",
         {},
         false,
         [&k](Request&) { return Response::json(200, gates_json(k)); }});

  // ---- Tools ----------------------------------------------------------------------------------
  r.add({"GET",
         "/v1/tools",
         "listTools",
         "Tools with providers and schemas",
         "tools",
         Role::kViewer,
         0,
         nullptr,
         tools_schema,
         200,
         "application/json",
         {},
         false,
         [&k](Request&) { return Response::json(200, tools_json(k)); }});
  r.add({"POST",
         "/v1/tools/{name}:invoke",
         "invokeTool",
         "Run one tool call through the ToolRuntimeExecutor",
         "tools",
         Role::kOperator,
         0,
         schema(R"({"type": "object", "required": ["input"], "additionalProperties": false,
                    "properties": {"input": {}}})"),
         schema(R"({"type": "object", "required": ["output"],
                    "properties": {"output": {},
                      "artifacts": {"type": "array", "description": "files the call made; a mission's step keeps them, a tool call does not",
                        "items": {"type": "object", "required": ["name", "media_type", "bytes"],
                          "properties": {"name": {"type": "string"}, "media_type": {"type": "string"},
                                         "bytes": {"type": "integer"}}}}}})"),
         200,
         "application/json",
         {},
         true,
         [&k](Request& req) {
           runtime::ToolCall call;
           call.tool = req.params.at("name");
           call.tenant = req.tenant;
           call.input = req.json.as_object().at("input");
           call.request_id = req.request_id;
           auto outcome = k.executor().invoke(call);
           if (!outcome.ok()) {
             const auto& e = outcome.error();
             json::object details{{"retryable", e.retryable}, {"tool", e.details}};
             // The input's own schema refused it: the field, as the body's schema errors name it.
             if (e.code == error_code::kInvalidInput && e.details.is_object())
               if (auto* f = e.details.as_object().if_contains("field"); f && f->is_string())
                 details["field"] = "body." + std::string(f->as_string());
             // (A 429's Retry-After comes from details.tool.retry_after_ms: the server's.)
             return error(tool_error_status(e.code), e.code, e.message, std::move(details));
           }
           json::array artifacts;
           for (const auto& a : outcome.value().artifacts)
             artifacts.push_back(json::object{{"name", a.name},
                                              {"media_type", a.media_type},
                                              {"bytes", static_cast<std::int64_t>(a.data.size())}});
           return Response::json(
               200, json::object{{"output", outcome.value().output}, {"artifacts", artifacts}});
         }});
  r.routes_mutable().back().runs_inline = [&k](const Request& req) {
    return k.executor().nonblocking(req.params.at("name"));
  };

  // ---- Audio (OpenAI-compatible speech) ------------------------------------------------------
  // The formats this build makes, in OpenAI's order: /openapi.json offers only what works (aac
  // never does; mp3 needs a libsndfile with MPEG support).
  json::array speech_formats;
  const auto have = audio::supported_formats();
  for (const char* f : {"mp3", "opus", "aac", "flac", "wav", "pcm"})
    if (std::find(have.begin(), have.end(), f) != have.end()) speech_formats.emplace_back(f);
  json::value speech_request = schema(R"({"type": "object", "required": ["model", "input", "voice"],
                    "properties": {
                      "model": {"type": "string", "minLength": 1},
                      "input": {"type": "string", "minLength": 1},
                      "voice": {"type": "string", "minLength": 1},
                      "response_format": {"type": "string",
                                          "description": "OpenAI's formats this server makes (not aac); default mp3"},
                      "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
                      "instructions": {"type": "string"},
                      "stream_format": {"type": "string", "enum": ["audio"],
                                        "description": "audio: the bytes as they are made (wav, pcm); OpenAI's sse is not offered"}}})");
  speech_request.as_object()["properties"].as_object()["response_format"].as_object()["enum"] =
      speech_formats;
  r.add({"POST",
         "/v1/audio/speech",
         "createSpeech",
         "Speak text (OpenAI's audio/speech API): the audio bytes in response_format. OpenAI's "
         "voice names (alloy, echo, ...) speak with the default voice; model is not used "
         "(nodes.tts_engine selects the engine); fields this server does not know are ignored",
         "audio",
         Role::kViewer,
         64 * 1024,
         speech_request,
         schema(R"({"type": "string", "format": "binary"})"),
         200,
         "audio/mpeg, audio/ogg, audio/flac, audio/wav, audio/pcm",
         {},
         true,
         [&k](Request& req) {
           const auto& b = req.json.as_object();
           std::string format = "mp3";  // OpenAI's default
           if (auto* f = b.if_contains("response_format")) format = std::string(f->as_string());
           const auto formats = audio::supported_formats();
           if (std::find(formats.begin(), formats.end(), format) == formats.end()) {
             json::array have;
             for (const auto& f : formats) have.emplace_back(f);
             throw HttpError{422, "unsupported_format",
                             "response_format '" + format + "' is not available on this server",
                             json::object{{"field", "body.response_format"}, {"supported", have}}};
           }
           if (auto* sf = b.if_contains("stream_format"); sf && sf->as_string() == "audio")
             return stream_speech(k, b, format);
           json::object input{{"text", b.at("input")}, {"format", format}};
           const std::string voice(b.at("voice").as_string());
           if (!runtime::is_openai_voice_name(voice)) input["voice"] = voice;
           if (auto* sp = b.if_contains("speed")) input["speed"] = sp->to_number<double>();
           runtime::ToolCall call;
           call.tool = "tts.synthesize";
           call.tenant = req.tenant;
           call.input = std::move(input);
           call.request_id = req.request_id;
           auto outcome = k.executor().invoke(call);
           if (!outcome.ok()) {
             const auto& e = outcome.error();
             throw HttpError{tool_error_status(e.code), e.code, e.message, e.details};
           }
           const auto& res = outcome.value();
           if (res.artifacts.empty())
             throw HttpError{500, "internal", "tts.synthesize returned no audio"};
           Response out;
           out.status = 200;
           out.content_type = res.artifacts.front().media_type;
           out.body = res.artifacts.front().data;
           const auto& o = res.output.as_object();
           if (format == "pcm") {
             // OpenAI's pcm is 24 kHz (its clients play it so): the voice's samples raised to it.
             const auto& raw = out.body;
             std::vector<std::int16_t> samples(raw.size() / 2);
             for (std::size_t i = 0; i < samples.size(); ++i)
               samples[i] = static_cast<std::int16_t>(
                   static_cast<std::uint16_t>(static_cast<unsigned char>(raw[2 * i])) |
                   static_cast<std::uint16_t>(static_cast<unsigned char>(raw[2 * i + 1]) << 8));
             const int rate = static_cast<int>(o.at("sample_rate").to_number<double>());
             out.body = audio::pcm_bytes(audio::resample(samples, rate, audio::kOpenAiPcmRate));
             out.content_type = audio::media_type("pcm", audio::kOpenAiPcmRate);
           }
           out.headers.emplace_back("X-Kiln-Voice", std::string(o.at("voice").as_string()));
           out.headers.emplace_back("X-Kiln-Audio-Seconds",
                                    std::to_string(o.at("seconds").to_number<double>()));
           return out;
         }});
  auto engine_or_503 = [&k]() {
    auto e = k.node<nodes::TtsEngine>();
    if (!e)
      throw HttpError{503, error_code::kProviderUnavailable,
                      "no tts_engine node is running (the tts_torch plugin is not loaded)"};
    return e;
  };
  const auto voices_schema = schema(R"({"type": "object", "required": ["voices", "default"],
      "properties": {"default": {"type": "string"}, "voices": {"type": "array", "items": {
        "type": "object", "required": ["id", "sample_rate", "state"],
        "properties": {"id": {"type": "string"}, "language": {"type": "string"},
                       "sample_rate": {"type": "integer"}, "description": {"type": "string"},
                       "phoneme_type": {"type": "string"}, "default": {"type": "boolean"},
                       "state": {"type": "string", "enum": ["loaded", "available", "failed"]},
                       "error": {"type": "string"}}}}}})");
  auto voices_json = [](const nodes::TtsEngine& e) {
    json::array arr;
    std::string def;
    for (const auto& v : e.voices()) {
      if (v.is_default) def = v.id;
      arr.push_back(v.to_json());
    }
    return json::object{{"voices", arr}, {"default", def}};
  };
  r.add({"GET",
         "/v1/audio/voices",
         "listVoices",
         "The voices of the selected tts_engine node with their load state",
         "audio",
         Role::kViewer,
         0,
         nullptr,
         voices_schema,
         200,
         "application/json",
         {},
         false,
         [engine_or_503, voices_json](Request&) {
           return Response::json(200, voices_json(*engine_or_503()));
         }});
  for (const char* action : {"load", "unload"}) {
    const bool load = std::string(action) == "load";
    r.add({"POST",
           std::string("/v1/audio/voices/{id}:") + action,
           load ? "loadVoice" : "unloadVoice",
           load ? "Load a voice now (instead of on first use); 503 with the reason if it fails"
                : "Free a voice's model (it loads again on next use)",
           "audio",
           Role::kOperator,
           0,
           nullptr,
           voices_schema,
           200,
           "application/json",
           {},
           true,
           [engine_or_503, voices_json, load](Request& req) {
             auto e = engine_or_503();
             const auto& id = req.params.at("id");
             auto r = load ? e->load_voice(id) : e->unload_voice(id);
             if (!r.ok())
               throw HttpError{tool_error_status(r.error().code), r.error().code, r.error().message,
                               r.error().details};
             return Response::json(200, voices_json(*e));
           }});
  }

  // ---- Missions -------------------------------------------------------------------------------
  r.add({"GET",
         "/v1/mission-templates",
         "listMissionTemplates",
         "The mission templates this server runs (what POST /v1/missions takes as template): "
         "name, description, inputs (JSON Schema properties) and steps with their tool, needs, "
         "the approval the policy gives them, attempts and timeout",
         "missions",
         Role::kViewer,
         0,
         nullptr,
         schema(R"({"type": "array", "items": {"type": "object",
           "required": ["name", "description", "source", "inputs", "steps"],
           "properties": {"name": {"type": "string"}, "description": {"type": "string"},
             "source": {"type": "string", "description": "the file it was read from: its path for admin keys, its name for others"},
             "inputs": {"type": "object", "description": "JSON Schema properties of its inputs"},
             "steps": {"type": "array", "items": {"type": "object",
               "required": ["id", "tool", "needs", "approval", "max_attempts", "timeout_ms"],
               "properties": {"id": {"type": "string"}, "tool": {"type": "string"},
                 "needs": {"type": "array", "items": {"type": "string"}},
                 "approval": {"type": "string", "enum": ["never", "on_failure", "required"]},
                 "max_attempts": {"type": "integer"},
                 "timeout_ms": {"type": ["integer", "null"]}}}}}}})"),
         200,
         "application/json",
         {},
         false,
         [&k](Request& req) {
           return Response::json(200, file_names_only(k.describe_templates(), "source", req));
         }});
  r.add({"POST",
         "/v1/missions",
         "createMission",
         "Start a mission; the governor decides at once. Idempotency-Key header (or "
         "idempotency_key) returns the existing mission",
         "missions",
         Role::kOperator,
         0,
         schema(R"({"type": "object", "required": ["template"], "additionalProperties": false,
                    "properties": {"template": {"type": "string", "minLength": 1},
                                   "inputs": {"type": "object"},
                                   "idempotency_key": {"type": "string", "minLength": 1,
                                                       "maxLength": 200}}})"),
         schema((std::string(R"({"type": "object", "required": ["created", "mission"],
                    "properties": {"created": {"type": "boolean"}, "mission": )") +
                 kMissionSchema + "}}")
                    .c_str()),
         201,
         "application/json",
         {},
         false,
         [&ctx, &k](Request& req) {
           const auto& b = req.json.as_object();
           missions::CreateRequest cr;
           cr.tenant = req.tenant;
           cr.template_name = std::string(b.at("template").as_string());
           if (auto* in = b.if_contains("inputs")) cr.inputs = in->as_object();
           if (auto* key = b.if_contains("idempotency_key"))
             cr.idempotency_key = std::string(key->as_string());
           // The header wins over the body's idempotency_key; an empty header is a client's
           // mistake, not "no key" (it made a new mission at every retry).
           for (const auto& [name, value] : req.headers)
             if (name == "idempotency-key") {
               if (value.empty() || value.size() > 200)
                 return error(422, "invalid_request",
                              "the Idempotency-Key header must be 1-200 characters (it is " +
                                  std::to_string(value.size()) + ")",
                              json::object{{"field", "header.Idempotency-Key"}});
               cr.idempotency_key = value;
             }
           cr.actor = *req.actor;
           auto result = k.missions().create(cr);
           if (auto* w = ctx.workers.load(); result.created && w) w->wake();
           return Response::json(
               result.created ? 201 : 200,
               json::object{{"created", result.created}, {"mission", result.mission.to_json()}});
         }});
  r.add({"GET",
         "/v1/missions",
         "listMissions",
         "Missions of the key's tenant, newest first; each step's output is null unless "
         "?outputs=true (GET /v1/missions/{id} has them). A full page carries a Link header "
         "(rel=\"next\") to the next one",
         "missions",
         Role::kViewer,
         0,
         nullptr,
         schema((std::string(R"({"type": "array", "items": )") + kMissionSchema + "}").c_str()),
         200,
         "application/json",
         {{"state", "only missions in this state (any case)", "string",
           json::object{{"enum", json::array{"PENDING", "RUNNING", "RETRY", "QUARANTINED",
                                             "BLOCKED", "DONE", "FAILED", "CANCELED"}}}},
          {"template", "only missions of this template"},
          {"limit", "at most this many (1-1000, default 100)", "integer", page_limit_schema()},
          {"starting_after", "the page after this mission (the last of the previous page)"},
          {"outputs", "true (or 1): each step's output too (default false)", "boolean"}},
         false,
         [&k](Request& req) {
           const bool outputs = bool_query(req, "outputs", false);
           missions::ListFilter f;
           f.tenant = req.tenant;
           if (auto it = req.query.find("state"); it != req.query.end()) f.state = it->second;
           if (auto it = req.query.find("template"); it != req.query.end())
             f.template_name = it->second;
           if (auto it = req.query.find("starting_after"); it != req.query.end())
             f.starting_after = it->second;
           const auto limit = page_limit(req);
           f.limit = limit + 1;  // one more tells whether there is a next page
           auto found = listed([&] { return k.missions().list(f); });
           const bool more = static_cast<std::int64_t>(found.size()) > limit;
           if (more) found.pop_back();
           json::array arr;
           for (const auto& m : found) arr.push_back(m.to_json(outputs));
           auto res = Response::json(200, arr);
           if (more) link_next_page(res, req, "starting_after", found.back().id);
           return res;
         }});
  r.add({"GET",
         "/v1/missions/{id}",
         "getMission",
         "One mission with its steps",
         "missions",
         Role::kViewer,
         0,
         nullptr,
         schema(kMissionSchema),
         200,
         "application/json",
         {},
         false,
         [&k](Request& req) {
           auto m = k.missions().get(req.tenant, req.params.at("id"));
           if (!m) throw HttpError{404, "not_found", "no mission " + req.params.at("id")};
           return Response::json(200, m->to_json());
         }});
  r.add({"GET",
         "/v1/missions/{id}/artifacts/{step}/{name}",
         "getMissionArtifact",
         "A file a mission step kept beside its output (listed in the step's `artifacts`, e.g. "
         "the spoken summary speech.wav of a roast_report's step speak), as its media type; the "
         "ETag is its SHA-256, also in the step.completed ledger event",
         "missions",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "string"}, {"format", "binary"}},
         200,
         "*/*",
         {},
         true,
         [&k](Request& req) {
           const auto& id = req.params.at("id");
           const auto& step = req.params.at("step");
           const auto& name = req.params.at("name");
           auto a = k.missions().artifact(req.tenant, id, step, name);
           if (!a) {
             if (!k.missions().get(req.tenant, id))  // another tenant's answers the same
               throw HttpError{404, "not_found", "no mission " + id};
             if (auto gone = k.missions().released(req.tenant, id, step, name))
               throw HttpError{404, "not_found",
                               "mission " + id + "'s file '" + name + "' from step '" + step +
                                   "' was " + *gone + "; the ledger keeps its SHA-256"};
             throw HttpError{404, "not_found",
                             "mission " + id + " has no file '" + name + "' from step '" + step +
                                 "' (GET /v1/missions/" + id + " lists each step's artifacts)"};
           }
           return artifact_response(*a, req);
         }});
  auto action = [&](const char* verb, const char* op, const char* summary, Role role) {
    r.add({"POST",
           std::string("/v1/missions/{id}:") + verb,
           op,
           summary,
           "missions",
           role,
           0,
           schema(kActionBody),
           schema(kMissionSchema),
           200,
           "application/json",
           {},
           false,
           [&ctx, &k, verb = std::string(verb)](Request& req) {
             const auto& id = req.params.at("id");
             auto& svc = k.missions();
             missions::MissionView m =
                 verb == "approve"  ? svc.approve(req.tenant, id, *req.actor, note_of(req))
                 : verb == "cancel" ? svc.cancel(req.tenant, id, *req.actor, note_of(req))
                                    : svc.retry(req.tenant, id, *req.actor, note_of(req));
             if (auto* w = ctx.workers.load()) w->wake();
             return Response::json(200, m.to_json());
           }});
  };
  action("approve", "approveMission", "Approve a QUARANTINED mission (approver role)",
         Role::kApprover);
  action("cancel", "cancelMission", "Cancel a mission that is not finished", Role::kOperator);
  action("retry", "retryMission", "Retry a RETRY or FAILED mission now", Role::kOperator);

  // ---- Telemetry ------------------------------------------------------------------------------
  const json::value device_key_schema = schema(R"({"type": "object",
    "required": ["kid", "tenant", "device", "public_key", "status"],
    "properties": {"kid": {"type": "string"}, "tenant": {"type": "string"},
      "device": {"type": "string"}, "public_key": {"type": "string"},
      "status": {"type": "string", "enum": ["active", "retiring", "expired", "revoked"]},
      "created_at": {"type": "string"}, "created_by": {"type": "string"},
      "not_after": {"type": ["string", "null"]}, "revoked_at": {"type": ["string", "null"]},
      "profile": {"type": ["string", "null"],
                  "description": "in listings: the profile the device roasts to"},
      "secret_key": {"type": "string",
                     "description": "only when the server generated the pair: shown once"}}})");
  // A time query parameter (epoch seconds); 422 naming it when it is not one.
  auto time_query = [](const Request& req, const char* name) -> std::optional<double> {
    auto it = req.query.find(name);
    if (it == req.query.end()) return std::nullopt;
    try {
      std::size_t used = 0;
      const double v = std::stod(it->second, &used);
      if (used == it->second.size() && std::isfinite(v)) return v;
    } catch (const std::exception&) {
    }
    throw HttpError{422, "invalid_request",
                    std::string("query parameter '") + name +
                        "' must be a time in epoch seconds, not '" + it->second + "'",
                    json::object{{"field", std::string("query.") + name}}};
  };
  const json::value session_schema = schema(R"({"type": "object",
    "required": ["id", "tenant", "device", "state", "start_t", "charge_t"],
    "properties": {"id": {"type": "string"}, "tenant": {"type": "string"},
      "device": {"type": "string"}, "state": {"type": "string", "enum": ["open", "closed"]},
      "start_t": {"type": "number"}, "charge_t": {"type": "number"},
      "end_t": {"type": ["number", "null"]},
      "drop_t": {"type": ["number", "null"], "description": "the DROP it closed at"},
      "reopens": {"type": "integer",
                  "description": "times it opened again after closing for silence"},
      "duration_s": {"type": "number",
                     "description": "CHARGE to DROP, else to the last reading; so far while open"},
      "last_t": {"type": ["number", "null"],
                 "description": "the newest reading (open: so far), epoch seconds"},
      "samples": {"type": "integer",
                  "description": "how many readings it holds; given by GET /v1/sessions/{id}, not in lists"},
      "close_reason": {"type": ["string", "null"]}, "opened_at": {"type": "string"},
      "closed_at": {"type": ["string", "null"]}, "mission_id": {"type": ["string", "null"]},
      "profile": {"type": ["object", "null"], "properties": {"name": {"type": "string"},
                                                               "version": {"type": "integer"}}},
      "first_boot": {"type": ["integer", "null"],
                     "description": "the device boots whose readings the session holds"},
      "last_boot": {"type": ["integer", "null"], "description": "the device boot its readings end in, set when it closes; null while open"},
      "report": {"type": ["object", "null"], "description": "where its report mission stands: null before it has one",
                 "properties": {"mission": {"type": "string"}, "state": {"type": "string"},
                                "verdict": {"type": ["string", "null"], "enum": ["pass", "warn", "fail", null],
                                            "description": "the QC verdict; null before QC ran"},
                                "accepted_by": {"type": ["string", "null"], "description": "the approver who accepted a failed roast"},
                                "outdated": {"type": "boolean", "description": "the report was made before the session's latest marks or weights"},
                                "files_released": {"type": "boolean", "description": "the mission's files (the spoken summary) were released by retention; the report page and JSON are made anew on request"}}},
      "weight": {"type": "object", "description": "the batch's weights a roaster entered (grams; null until weighed) and its loss",
                 "properties": {"green_g": {"type": ["number", "null"]}, "roasted_g": {"type": ["number", "null"]},
                                "loss_percent": {"type": ["number", "null"]}}},
      "marks": {"type": "object", "additionalProperties": {"type": "number"},
                "description": "events a roaster marked (CHARGE, DRY_END, FCs, DROP): epoch seconds of the device's clock; the analysis takes them over the detector's"}}})");
  const auto max_envelope =
      static_cast<std::size_t>(k.config().get_int("telemetry.max_batch_bytes"));
  r.add({"POST",
         "/v1/telemetry/{device}",
         "ingestTelemetry",
         "Ingest one signed telemetry envelope (COSE_Sign1, Ed25519, CBOR batch) of a device; "
         "the tenant and the device are the external AAD. Stored once per (device, boot, seq): "
         "the same envelope again answers duplicate: true; refusals carry a stable reason code. "
         "Takes a recorder key (a roaster's: it can do nothing else) or an operator key and up, "
         "not a viewer key. With dry_run=true the envelope is checked and answered as it would "
         "be, and nothing is stored, counted or recorded",
         "telemetry",
         Role::kRecorder,
         max_envelope,  // a larger body is not read: too_large below answers oversized_batch
         nullptr,
         schema(R"({"type": "object",
                    "required": ["accepted", "duplicate", "device", "kid", "boot", "seq", "samples"],
                    "properties": {"accepted": {"type": "boolean"},
                      "duplicate": {"type": "boolean"}, "device": {"type": "string"},
                      "kid": {"type": "string"}, "boot": {"type": "integer"},
                      "seq": {"type": "integer"}, "samples": {"type": "integer"},
                      "ledger_seq": {"type": "integer"},
                      "dry_run": {"type": "boolean", "description": "true: only checked (?dry_run=true); nothing was stored"},
                      "ignored_keys": {"type": "array", "items": {"type": "string"},
                                       "description": "payload keys kiln does not know, or repeated, that were skipped (payload.samples[].heat): the readings are stored without them"}}})"),
         200,
         "application/json",
         {{"dry_run",
           "true (or 1): every check ingestion makes — key, signature, payload, clocks, boot "
           "and sequence window, whether the batch is stored already — answered as it would "
           "be, with dry_run: true; nothing is stored, counted or recorded (default false)",
           "boolean"}},
         false,
         nullptr,
         nullptr,
         "application/cose",
         // Checked and verified on the I/O thread; answered once the batch is durable (the
         // ledger's group commit), with no thread waiting for it.
         [&k](Request& req, Respond respond) {
           // Roles are ordered and a recorder's is the lowest: a viewer, above it, only reads.
           if (req.actor->role == Role::kViewer)
             throw HttpError{403, "forbidden",
                             "POST /v1/telemetry needs a recorder key or the operator role; this "
                             "key has viewer (kiln keys create --role recorder makes one for a "
                             "roaster)"};
           const auto now =
               std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                   .count();
           if (bool_query(req, "dry_run", false)) {
             const auto res = k.telemetry().ingestor().check_only(
                 req.tenant, req.params.at("device"), req.body, now);
             respond(res.accepted
                         ? Response::json(200, res.to_json())
                         : error(res.http_status(), res.reason, res.message, res.to_json()));
             return;
           }
           k.telemetry().ingestor().ingest_async(
               req.tenant, req.params.at("device"), req.body, now,
               [respond, &req](telemetry::IngestResult res, std::exception_ptr failed) {
                 if (failed)
                   respond(Router::failure(failed, req));  // req lives until answered
                 else if (!res.accepted)
                   respond(error(res.http_status(), res.reason, res.message, res.to_json()));
                 else
                   respond(Response::json(200, res.to_json()));
               });
         }});
  r.add({"GET",
         "/v1/devices",
         "listDevices",
         "Device keys of the key's tenant",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "array"}, {"items", device_key_schema}},
         200,
         "application/json",
         {},
         false,
         [&k](Request& req) {
           return Response::json(200,
                                 telemetry::ProfileStore::with_profiles(
                                     k.storage_path(), k.telemetry().devices().list(req.tenant)));
         }});
  // One roaster as a dashboard shows it: its keys, the profile it roasts to, its newest reading
  // and the session under way.
  r.add(
      {"GET",
       "/v1/devices/{device}",
       "getDevice",
       "One device of the key's tenant: its keys, the profile its sessions record, the time "
       "of its newest reading and its open session",
       "telemetry",
       Role::kViewer,
       0,
       nullptr,
       schema(
           (R"({"type": "object", "required": ["device", "tenant", "keys", "profile", "last_reading_t", "open_session"],
                    "properties": {"device": {"type": "string"}, "tenant": {"type": "string"},
                      "keys": {"type": "array", "items": )" +
            json::serialize(device_key_schema) + R"(},
                      "profile": {"type": ["string", "null"], "description": "NAME or NAME@VERSION, as assigned"},
                      "last_reading_t": {"type": ["number", "null"], "description": "epoch seconds"},
                      "open_session": {"type": ["object", "null"], "description": "the roast under way, as GET /v1/sessions/{id}"}}})")
               .c_str()),
       200,
       "application/json",
       {},
       false,
       [&k](Request& req) {
         const std::string device = req.params.at("device");
         const std::string now = ledger::utc_now_millis();
         json::array keys;
         for (const auto& d : k.telemetry().devices().list(req.tenant))
           if (d.device == device) keys.push_back(d.to_json(now));
         if (keys.empty())
           throw HttpError{404, "not_found",
                           "no device '" + device + "' in tenant " + req.tenant +
                               " (GET /v1/devices lists them; POST /v1/devices adds one)"};
         storage::Connection c(k.storage_path(), storage::Connection::Mode::kReadOnly);
         const auto profile = telemetry::ProfileStore::assigned(c, req.tenant, device);
         auto st =
             c.prepare("SELECT MAX(last_t) FROM telemetry_all WHERE tenant = ? AND device = ?");
         st.bind(1, req.tenant).bind(2, device);
         json::value last = nullptr;
         if (st.step() && !st.is_null(0)) last = st.real(0);
         telemetry::Sessionizer::ListFilter under_way;
         under_way.tenant = req.tenant;
         under_way.device = device;
         under_way.limit = 1;
         under_way.state = "open";
         const auto open = telemetry::Sessionizer::list(k.storage_path(), under_way);
         return Response::json(
             200,
             json::object{{"device", device},
                          {"tenant", req.tenant},
                          {"keys", std::move(keys)},
                          {"profile", profile ? json::value(*profile) : json::value(nullptr)},
                          {"last_reading_t", last},
                          {"open_session", open.empty() ? json::value(nullptr)
                                                        : json::value(open.front().to_json())}});
       }});
  // A device (and a profile) name: safe in URLs, file names and YAML
  // (telemetry::valid_device_name).
  const char* add_device_body = R"({"type": "object", "additionalProperties": false,
    "required": ["device"],
    "properties": {"public_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                     "description": "the device's own Ed25519 public key; without it the server generates a pair and returns the secret once"},
                   "device": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                              "description": "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"}}})";
  const char* rotate_device_body = R"({"type": "object", "additionalProperties": false,
    "properties": {"public_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                     "description": "the device's own Ed25519 public key; without it the server generates a pair and returns the secret once"},
                   "grace_s": {"type": "integer", "minimum": 0, "maximum": 2592000,
                               "description": "how long the old keys stay valid, default 3600"}}})";
  // A new key's answer; with its secret key (made here) shown once, so no cache (a proxy's, a
  // browser's) may keep it.
  auto credentials = [](int status, const telemetry::DeviceCredentials& c) {
    json::object o{{"kid", c.key.kid},
                   {"tenant", c.tenant},
                   {"device", c.device},
                   {"public_key", telemetry::to_hex(c.key.pub.data(), c.key.pub.size())},
                   {"status", "active"}};
    bool has_secret = false;
    for (auto b : c.key.secret) has_secret = has_secret || b != 0;
    if (has_secret) o["secret_key"] = c.to_json().at("secret_key");
    auto res = Response::json(status, o);
    res.headers.emplace_back("Cache-Control", "no-store");
    return res;
  };
  auto public_key_of = [](const json::object& b) -> std::optional<telemetry::PublicKey> {
    // Present means the device keeps its secret: a key that does not parse is an error, never a
    // reason to make a pair here instead (that would send a secret over the wire).
    auto* pk = b.if_contains("public_key");
    if (!pk) return std::nullopt;
    try {
      return telemetry::parse_device_public_key(pk->as_string());
    } catch (const std::invalid_argument& e) {
      throw HttpError{422, "invalid_request", std::string("body.public_key: ") + e.what(),
                      json::object{{"field", "body.public_key"}}};
    }
  };
  r.add({"POST",
         "/v1/devices",
         "addDevice",
         "Register a device and its key (operator role)",
         "telemetry",
         Role::kOperator,
         0,
         schema(add_device_body),
         device_key_schema,
         201,
         "application/json",
         {},
         true,
         [&k, credentials, public_key_of](Request& req) {
           const auto& b = req.json.as_object();
           auto c = k.telemetry().devices().add(req.tenant, std::string(b.at("device").as_string()),
                                                public_key_of(b), *req.actor);
           return credentials(201, c);
         }});
  r.add({"POST",
         "/v1/devices/{device}:rotate",
         "rotateDeviceKey",
         "A new key for a device; its older keys stay valid for grace_s (default 3600) at most",
         "telemetry",
         Role::kOperator,
         0,
         schema(rotate_device_body),
         device_key_schema,
         200,
         "application/json",
         {},
         true,
         [&k, credentials, public_key_of](Request& req) {
           const auto& b = req.json.as_object();
           std::int64_t grace = 3600;
           if (auto* g = b.if_contains("grace_s")) grace = g->to_number<std::int64_t>();
           auto c =
               k.telemetry().devices().rotate(req.tenant, req.params.at("device"), public_key_of(b),
                                              std::chrono::seconds(grace), *req.actor);
           return credentials(200, c);
         }});
  r.add({"POST",
         "/v1/devices/{id}:revoke",
         "revokeDeviceKey",
         "Revoke one key (a kid) or every key of a device (a device name)",
         "telemetry",
         Role::kOperator,
         0,
         schema(kActionBody),
         json::object{{"type", "array"}, {"items", device_key_schema}},
         200,
         "application/json",
         {},
         true,
         [&k](Request& req) {
           const std::string now = ledger::utc_now_millis();
           json::array arr;
           for (const auto& d :
                k.telemetry().devices().revoke(req.tenant, req.params.at("id"), *req.actor))
             arr.push_back(d.to_json(now));
           return Response::json(200, arr);
         }});
  r.add({"GET",
         "/v1/sessions",
         "listSessions",
         "Roast sessions of the key's tenant, newest first. A full page carries a Link header "
         "(rel=\"next\") to the next one",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "array"}, {"items", session_schema}},
         200,
         "application/json",
         {{"device", "only this device"},
          {"state", "open (roasts under way) or closed", "string",
           json::object{{"enum", json::array{"open", "closed"}}}},
          {"limit", "at most this many (1-1000, default 100)", "integer", page_limit_schema()},
          {"since", "only sessions that started at or after this time (epoch seconds)", "number"},
          {"before", "only sessions that started before this time (epoch seconds)", "number"},
          {"starting_after", "the page after this session (the last of the previous page)"}},
         false,
         [&k, time_query](Request& req) {
           telemetry::Sessionizer::ListFilter f;
           f.tenant = req.tenant;
           if (auto it = req.query.find("device"); it != req.query.end()) f.device = it->second;
           if (auto it = req.query.find("state"); it != req.query.end()) {
             if (it->second != "open" && it->second != "closed")
               throw HttpError{
                   422, "invalid_request",
                   "query parameter 'state' must be open or closed, not '" + it->second + "'",
                   json::object{{"field", "query.state"}}};
             f.state = it->second;
           }
           const auto limit = page_limit(req);
           f.limit = limit + 1;  // one more tells whether there is a next page
           f.since = time_query(req, "since");
           f.before = time_query(req, "before");
           if (auto it = req.query.find("starting_after"); it != req.query.end())
             f.starting_after = it->second;
           auto found = listed([&] { return telemetry::Sessionizer::list(k.storage_path(), f); });
           const bool more = static_cast<std::int64_t>(found.size()) > limit;
           if (more) found.pop_back();
           json::array arr;
           for (const auto& s : found) arr.push_back(s.to_json());
           auto res = Response::json(200, arr);
           if (more) link_next_page(res, req, "starting_after", found.back().id);
           return res;
         }});
  r.add({"GET",
         "/v1/sessions/{id}",
         "getSession",
         "One roast session",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         session_schema,
         200,
         "application/json",
         {},
         false,
         [&k](Request& req) {
           return Response::json(
               200, telemetry::Sessionizer::described(k.storage_path(), session_or_404(k, req)));
         }});
  r.add({"POST",
         "/v1/sessions/{id}:weigh",
         "weighSession",
         "Record the batch's weights (operator role), in grams: green_g (the green beans charged), "
         "roasted_g (the roasted beans out, weighed once cooled); either may come later. The "
         "analysis, report and QC (a weight_loss target) then know the weight loss; a closed "
         "session's report mission runs again with them (report: false skips that)",
         "telemetry",
         Role::kOperator,
         0,
         schema(R"({"type": "object", "additionalProperties": false,
                    "properties": {"green_g": {"type": "number", "minimum": 10, "maximum": 100000,
                                     "description": "the green beans charged, in grams: 500 for half a kilo"},
                                   "roasted_g": {"type": "number", "minimum": 10, "maximum": 100000,
                                     "description": "the roasted beans out, in grams, below green_g"},
                                   "report": {"type": "boolean", "description": "default true"}}})"),
         session_schema,
         200,
         "application/json",
         {},
         true,
         [&k](Request& req) { return roaster_change(k, req, "weigh"); }});
  r.add({"POST",
         "/v1/sessions/{id}:mark",
         "markSessionEvent",
         "Mark when an event happened in a roast (operator role): first crack is heard, not seen, "
         "so a roaster's FCs (or CHARGE, DRY_END, DROP) stands over the detector's in the "
         "session's analysis, QC, report and prediction. At t (the device's clock), else "
         "after_charge seconds after CHARGE, else now (a live mark); clear: true removes it "
         "(409 when it is not marked). A closed session's report mission runs again with the "
         "marks (report: false skips that)",
         "telemetry",
         Role::kOperator,
         0,
         schema(R"({"type": "object", "required": ["event"], "additionalProperties": false,
                    "properties": {"event": {"type": "string", "minLength": 1,
                                             "description": "CHARGE, DRY_END, FCs or DROP"},
                                   "t": {"type": "number", "description": "epoch seconds, the device's clock"},
                                   "after_charge": {"type": "number", "minimum": 0,
                                                    "description": "seconds after the session's CHARGE"},
                                   "clear": {"type": "boolean"},
                                   "report": {"type": "boolean", "description": "default true"}}})"),
         session_schema,
         200,
         "application/json",
         {},
         true,
         [&k](Request& req) { return roaster_change(k, req, "mark"); }});
  r.add({"GET",
         "/v1/sessions/{id}/samples",
         "getSessionSamples",
         "A session's samples in time order: [t, bt, et, ror, heater, fan, drum, state]. A live "
         "view polls with ?after= the last_t of its previous answer for what came since",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         schema(
             R"({"type": "object", "required": ["session", "state", "columns", "samples", "last_t"],
                    "properties": {"session": {"type": "string"},
                      "state": {"type": "string", "enum": ["open", "closed"],
                                "description": "closed: no more samples will come"},
                      "columns": {"type": "array", "items": {"type": "string"}},
                      "samples": {"type": "array", "description": "readings, oldest first, each a row in the order of columns",
                                  "items": {"type": "array", "minItems": 8, "maxItems": 8,
                                            "prefixItems": [{"type": "number", "description": "t, epoch seconds"}, {"type": "number", "description": "bt, °C"},
                                                            {"type": "number", "description": "et, °C"}, {"type": "number", "description": "ror, °C/min as the device sent it; 0 may be none"},
                                                            {"type": "integer", "description": "heater"}, {"type": "integer", "description": "fan"},
                                                            {"type": "integer", "description": "drum"}, {"type": "integer", "description": "state"}]}},
                      "last_t": {"type": ["number", "null"],
                                 "description": "the newest sample's time (else the after given): the next poll's after"}}})"),
         200,
         "application/json",
         {{"after", "only samples later than this time (epoch seconds)", "number"}},
         false,
         [&k, time_query](Request& req) {
           const auto s = session_or_404(k, req);
           const auto after = time_query(req, "after");
           auto samples = telemetry::Sessionizer::samples(k.storage_path(), s, after);
           json::value last = samples.empty() ? (after ? json::value(*after) : json::value(nullptr))
                                              : json::value(samples.back().t);
           return with_etag(
               Response::json(200,
                              json::object{{"session", s.id},
                                           {"state", s.state},
                                           {"columns", json::array{"t", "bt", "et", "ror", "heater",
                                                                   "fan", "drum", "state"}},
                                           {"samples", telemetry::samples_json(samples)},
                                           {"last_t", last}}),
               req);
         }});

  // ---- Profiles -------------------------------------------------------------------------------
  const json::value profile_schema = schema(R"({"type": "object",
    "required": ["name", "version", "latest", "title", "tenant", "created_at", "created_by"],
    "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
      "latest": {"type": "integer"}, "title": {"type": "string"}, "tenant": {"type": "string"},
      "created_at": {"type": "string"}, "created_by": {"type": "string"},
      "archived_at": {"type": ["string", "null"]},
      "profile": {"type": "object", "description": "the profile, as roast.profile_import makes it"},
      "qc_targets": {"type": "array", "items": {"type": "string"},
                     "description": "on save: the QC targets as a roaster reads them"},
      "notes": {"type": "array", "items": {"type": "string"},
                "description": "on save: what QC will not check against this profile"},
      "unchanged": {"type": "boolean",
                    "description": "on save: true when the newest version had this content already, so nothing was saved"}}})");
  auto version_query = [](const Request& req) -> std::optional<std::int64_t> {
    auto it = req.query.find("version");
    if (it == req.query.end()) return std::nullopt;  // the newest
    return int_query(req, "version", 1, 1, INT64_MAX);
  };
  auto profile_or_404 = [&k, version_query](const Request& req) {
    auto v = version_query(req);
    auto p = telemetry::ProfileStore::get(k.storage_path(), req.tenant, req.params.at("name"), v);
    if (!p) {
      const auto& name = req.params.at("name");
      throw HttpError{
          404, "not_found",
          telemetry::ProfileStore::not_found(
              k.storage_path(), req.tenant, name, v,
              name.find('@') != std::string::npos ? "a version goes in ?version=N, not after @"
              : v ? "GET /v1/profiles/" + name + "/versions lists them"
                  : "GET /v1/profiles lists them")};
    }
    return *p;
  };
  // Runs tools for a route in the key's tenant: the output or the tool's error. Those a GET
  // runs make what it reads, and are not audited: a dashboard polling a roast's report or
  // prediction would otherwise fill the ledger.
  auto tools_of = [&k](const Request& req) -> telemetry::ToolRunner {
    return [&k, tenant = req.tenant, request_id = req.request_id,
            act = req.method != "GET" && req.method != "HEAD"](
               const std::string& tool, json::object input) -> Result<json::value, ToolError> {
      runtime::ToolCall call;
      call.tool = tool;
      call.tenant = tenant;
      call.input = std::move(input);
      call.request_id = request_id;
      call.audited = act;
      auto outcome = k.executor().invoke(call);
      if (!outcome.ok()) return Unexpected<ToolError>{outcome.error()};
      return std::move(outcome.value().output);
    };
  };
  // A tool's error as the route's.
  auto tool_failed = [](const ToolError& e, const std::string& tool) {
    if (e.code == error_code::kUnknownTool)
      return HttpError{503, "unavailable",
                       "this route needs the tool " + tool +
                           " (the roast plugin's), which this server has not loaded"};
    // The tool's details as the route's ({"session": ...} for a session not found), as every
    // route answers them; none is an empty object.
    return HttpError{tool_error_status(e.code), e.code, e.message,
                     e.details.is_object() ? e.details.as_object() : json::object{}};
  };
  // Runs a tool for a route (profiles) in the key's tenant; its error is the route's.
  auto run_tool = [tools_of, tool_failed](const Request& req, const char* tool,
                                          json::object input) {
    auto out = tools_of(req)(tool, std::move(input));
    if (!out.ok()) throw tool_failed(out.error(), tool);
    return out.value().as_object();
  };
  // The tool chains behind a session's report and prediction (session_views.hpp), for any key
  // that may read the session: the tools themselves need the operator role through POST
  // /v1/tools. A failed tool is named by the error's message.
  auto view_failed = [tool_failed](const ToolError& e) {
    return tool_failed(e, "roast.analyze, roast.qc, roast.report and roast.predict");
  };
  r.add({"GET",
         "/v1/sessions/{id}/report",
         "getSessionReport",
         "A roast session's report, made now: its numbers as JSON (format kiln.roast-report/1: "
         "events, phases, QC, the comparison with its profile), or with ?format=html the page "
         "(inline SVG chart, opens offline)",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         schema(R"({"type": "object", "required": ["format", "session", "events", "phases", "qc"],
         "properties": {
           "format": {"const": "kiln.roast-report/1"}, "title": {"type": "string"},
           "session": {"type": "object", "properties": {"id": {"type": "string"}, "tenant": {"type": "string"},
             "device": {"type": "string"}, "state": {"type": "string"}, "charge_t": {"type": "number"},
             "drop_t": {"type": ["number", "null"]}, "profile": {"type": ["object", "null"]}}},
           "events": {"type": "object", "description": "CHARGE, TP, DRY_END, FCs, DROP: each null (not found) or {time: seconds after CHARGE, bt: °C, source: how it was found (marked, roaster state, phases, ...), FCs also estimated}",
             "additionalProperties": {"type": ["object", "null"], "required": ["time", "bt"],
               "properties": {"time": {"type": "number"}, "bt": {"type": ["number", "null"]},
                 "source": {"type": "string"}, "estimated": {"type": "boolean", "description": "FCs only"}}}},
           "phases": {"type": "object", "properties": {"drying": {"type": ["number", "null"]}, "maillard": {"type": ["number", "null"]},
             "development": {"type": ["number", "null"]}, "dtr": {"type": ["number", "null"], "description": "percent"}}},
           "auc": {"type": ["number", "null"], "description": "°C·min above the base, TP to DROP"},
           "ror": {"type": "object", "description": "°C/min", "properties": {"at_fcs": {"type": ["number", "null"]}, "at_drop": {"type": ["number", "null"]},
             "crash": {"type": "boolean"}, "flick": {"type": "boolean"}}},
           "weight": {"type": "object", "description": "grams; null until weighed", "properties": {"green": {"type": ["number", "null"]},
             "roasted": {"type": ["number", "null"]}, "loss_percent": {"type": ["number", "null"]}}},
           "summary": {"type": "string", "description": "the summary as the speech engine says it"},
           "qc": {"type": "object", "properties": {"verdict": {"type": "string", "enum": ["pass", "warn", "fail", "pending"]},
             "checks": {"type": "array", "items": {"type": "object", "required": ["check", "result", "reason"],
               "properties": {"check": {"type": "string"}, "result": {"type": "string"}, "reason": {"type": "string"}}}},
             "accepted_by": {"type": "string", "description": "the approver who accepted a failed roast"}}},
           "settings": {"type": ["array", "null"], "description": "the roaster's settings from CHARGE to DROP: the levels at CHARGE, then each change",
             "items": {"type": "object", "properties": {"t": {"type": "number"}, "control": {"type": "string", "enum": ["heater", "fan", "drum"]},
               "level": {"type": "integer"}}}},
           "reference": {"type": ["object", "null"], "description": "the comparison with the session's profile; null without one",
             "properties": {"profile": {"type": "string"}, "fcs_time": {"type": ["number", "null"]}, "drop_time": {"type": ["number", "null"]},
               "drop_bt": {"type": ["number", "null"]}, "delta": {"type": "object"}, "settings": {"type": ["array", "null"]}}}}})"),
         200,
         "application/json, text/html",
         {{"format", "json (default) or html", "string",
           json::object{{"enum", json::array{"json", "html"}}}}},
         true,
         [&k, tools_of, view_failed](Request& req) {
           std::string format = "json";
           if (auto it = req.query.find("format"); it != req.query.end()) format = it->second;
           if (format != "json" && format != "html")
             throw HttpError{422, "invalid_request",
                             "query parameter 'format' must be json or html, not '" + format + "'",
                             json::object{{"field", "query.format"}}};
           auto rep = telemetry::session_report(
               tools_of(req), req.params.at("id"),
               telemetry::accepted_in(k.missions(), req.tenant, k.storage_path()));
           if (!rep.ok()) throw view_failed(rep.error());
           if (format == "html")
             return with_etag(Response::text(200, std::string(rep.value().at("html").as_string()),
                                             "text/html; charset=utf-8"),
                              req);
           return with_etag(Response::json(200, rep.value().at("report")), req);
         }});
  r.add({"GET",
         "/v1/sessions/{id}/alog",
         "exportSessionAlog",
         "A recorded roast session as an Artisan log (opens in Artisan and `kiln analyze`): its "
         "readings, state channel, CHARGE and DROP, and FCs when a roaster marked it (an "
         "estimated FCs is not written; X-Kiln-FCs-Estimated: true says so)",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "string"}},
         200,
         "text/plain",
         {},
         true,
         [tools_of, view_failed](Request& req) {
           const std::string id = req.params.at("id");
           auto alog = telemetry::session_alog(tools_of(req), id);
           if (!alog.ok()) throw view_failed(alog.error());
           auto res = Response::text(200, std::string(alog.value().at("alog").as_string()),
                                     "text/plain; charset=utf-8");
           std::string file;
           for (const char c : id) file += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
           res.headers.emplace_back("Content-Disposition",
                                    "attachment; filename=\"" + file + ".alog\"");
           res.headers.emplace_back("X-Kiln-FCs-Estimated",
                                    alog.value().at("fcs_estimated").as_bool() ? "true" : "false");
           return res;
         }});
  r.add({"GET",
         "/v1/sessions/{id}/summary",
         "getSessionSummaryAudio",
         "The spoken summary of a closed roast session: the audio its report mission "
         "(roast_report) made, as that mission's step kept it (ETag: its SHA-256)",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "string"}, {"format", "binary"}},
         200,
         "audio/wav",
         {},
         true,
         [&k](Request& req) {
           auto a = telemetry::session_summary_audio(k.storage_path(), k.missions(), req.tenant,
                                                     req.params.at("id"));
           if (!a.ok())
             throw HttpError{a.error().code == "not_ready" ? 409 : 404, a.error().code,
                             a.error().message, a.error().details};
           return artifact_response(a.value(), req);
         }});
  r.add({"GET",
         "/v1/sessions/{id}/predict",
         "getSessionPrediction",
         "Predictive assist for a live roast session, read-only: from its curve so far, when first "
         "crack (FCs) and DROP are expected (seconds after CHARGE, each with an early/late band; "
         "a late end the fit cannot bound is null), DROP at the DTR its profile aims at. A closed "
         "session answers status \"closed\" with a message",
         "telemetry",
         Role::kViewer,
         0,
         nullptr,
         schema(R"({"type": "object", "required": ["status", "message"],
                    "properties": {
                      "status": {"type": "string",
                                 "enum": ["ok", "fcs_reached", "drop_due", "too_early", "stalling", "no_charge", "closed"],
                                 "description": "ok: fcs and drop are expected times; fcs_reached: BT is at the FCs temperature; drop_due: past the DROP for the DTR aimed at (drop now); too_early: before 90 s after TP; stalling: the rate of rise would not reach FCs; closed: the session is over"},
                      "message": {"type": "string"},
                      "now": {"type": "number", "description": "seconds after CHARGE"},
                      "bt": {"type": "number"}, "ror": {"type": "number", "description": "per minute"},
                      "ror_slope": {"type": "number", "description": "change of the RoR over the next minute"},
                      "fcs_bt": {"type": "number"}, "dtr_target": {"type": "number"},
                      "fcs": {"type": "object", "description": "seconds after CHARGE; late null: the fit cannot bound it",
                              "properties": {"eta": {"type": ["number", "null"]}, "early": {"type": ["number", "null"]}, "late": {"type": ["number", "null"]},
                                             "marked": {"type": "boolean", "description": "FCs is behind and the roaster marked it; false: BT reached the FCs temperature (an estimate) or it is ahead"}}},
                      "drop": {"type": "object", "description": "as fcs, at the DTR aimed at",
                               "properties": {"eta": {"type": ["number", "null"]}, "early": {"type": ["number", "null"]}, "late": {"type": ["number", "null"]}}}}})"),
         200,
         "application/json",
         {},
         true,
         [tools_of, view_failed](Request& req) {
           auto p = telemetry::session_predict(tools_of(req), req.params.at("id"));
           if (!p.ok()) throw view_failed(p.error());
           return Response::json(200, std::move(p.value()));
         }});
  r.add({"GET",
         "/v1/profiles",
         "listProfiles",
         "Roast profiles of the key's tenant (newest version of each name), by name",
         "profiles",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "array"}, {"items", profile_schema}},
         200,
         "application/json",
         {{"archived", "true (or 1): include archived profiles; false (or 0): not", "boolean"}},
         false,
         [&k](Request& req) {
           const bool all = bool_query(req, "archived", false);
           json::array arr;
           for (const auto& p : telemetry::ProfileStore::list(k.storage_path(), req.tenant, all))
             arr.push_back(p.to_json(false));
           return Response::json(200, arr);
         }});
  r.add({"POST",
         "/v1/profiles",
         "saveProfile",
         "Save a profile as the next version of its name, from an Artisan .alog's text or a "
         "profile's JSON (checked by the roast plugin's roast.profile_import). The same content "
         "and title as the newest version (a retried save) saves nothing: 200 with that version "
         "and \"unchanged\": true",
         "profiles",
         Role::kOperator,
         16u << 20,
         schema(R"({"type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {"name": {"type": "string",
                                            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                                            "description": "1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"},
                                   "title": {"type": "string"},
                                   "alog": {"type": "string", "minLength": 1},
                                   "profile": {"type": "object"},
                                   "phases": {"type": "array", "items": {"type": "number"},
                                              "minItems": 4, "maxItems": 4,
                                              "description": "Artisan's phase temperatures in the profile's unit (drying from, DRY END, FCs, finish) instead of the file's"}}})"),
         profile_schema,
         201,
         "application/json",
         {},
         true,
         [&k, run_tool](Request& req) {
           auto in = req.json.as_object();
           const std::string name(in.at("name").as_string());
           in.erase("name");
           telemetry::ProfileRef::parse(name);  // a bad name before the plugin reads the file
           auto out = run_tool(req, "roast.profile_import", std::move(in));
           auto p = k.telemetry().profiles().save(req.tenant, name, out.at("profile").as_object(),
                                                  *req.actor);
           auto saved = p.to_json(false);
           saved["qc_targets"] = out.at("qc_targets");
           saved["notes"] = out.at("notes");
           saved["unchanged"] = p.unchanged;
           return Response::json(p.unchanged ? 200 : 201, saved);
         }});
  r.add(
      {"GET",
       "/v1/profiles/{name}",
       "getProfile",
       "One profile version with its content (the newest without ?version)",
       "profiles",
       Role::kViewer,
       0,
       nullptr,
       profile_schema,
       200,
       "application/json",
       {{"version", "this version (default: the newest)", "integer", json::object{{"minimum", 1}}}},
       false,
       [profile_or_404](Request& req) {
         return Response::json(200, profile_or_404(req).to_json(true));
       }});
  r.add({"GET",
         "/v1/profiles/{name}/versions",
         "listProfileVersions",
         "Every version of a profile, oldest first",
         "profiles",
         Role::kViewer,
         0,
         nullptr,
         json::object{{"type", "array"}, {"items", profile_schema}},
         200,
         "application/json",
         {},
         false,
         [&k](Request& req) {
           json::array arr;
           for (const auto& p : telemetry::ProfileStore::versions(k.storage_path(), req.tenant,
                                                                  req.params.at("name")))
             arr.push_back(p.to_json(false));
           if (arr.empty())
             throw HttpError{404, "not_found",
                             telemetry::ProfileStore::not_found(k.storage_path(), req.tenant,
                                                                req.params.at("name"), std::nullopt,
                                                                "GET /v1/profiles lists them")};
           return Response::json(200, arr);
         }});
  r.add(
      {"GET",
       "/v1/profiles/{name}/alog",
       "exportProfileAlog",
       "A profile version as an Artisan .alog file (text/plain; a Python literal dict)",
       "profiles",
       Role::kViewer,
       0,
       nullptr,
       json::object{{"type", "string"}},
       200,
       "text/plain",
       {{"version", "this version (default: the newest)", "integer", json::object{{"minimum", 1}}}},
       true,
       [profile_or_404, run_tool](Request& req) {
         const auto p = profile_or_404(req);
         auto out = run_tool(req, "roast.profile_export", json::object{{"profile", p.body}});
         auto res = Response::text(200, std::string(out.at("alog").as_string()),
                                   "text/plain; charset=utf-8");
         res.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + p.name + "-v" +
                                                             std::to_string(p.version) + ".alog\"");
         return res;
       }});
  for (const bool archive : {true, false})
    r.add({"POST",
           archive ? "/v1/profiles/{name}:archive" : "/v1/profiles/{name}:restore",
           archive ? "archiveProfile" : "restoreProfile",
           archive ? "Archive a profile with all its versions (hidden from lists, not "
                     "assignable); 409 while a device is assigned it, naming the devices"
                   : "Restore an archived profile",
           "profiles",
           Role::kOperator,
           0,
           schema(kActionBody),
           profile_schema,
           200,
           "application/json",
           {},
           true,
           [&k, archive](Request& req) {
             auto p = k.telemetry().profiles().set_archived(req.tenant, req.params.at("name"),
                                                            archive, *req.actor);
             return Response::json(200, p.to_json(false));
           }});
  r.add({"POST",
         "/v1/devices/{device}:profile",
         "assignDeviceProfile",
         "The profile a device roasts to from now on (name or name@version; null clears it); "
         "sessions opened on it record the version current when they open",
         "profiles",
         Role::kOperator,
         0,
         schema(R"({"type": "object", "required": ["profile"], "additionalProperties": false,
                    "properties": {"profile": {"type": ["string", "null"], "minLength": 1}}})"),
         schema(R"({"type": "object", "required": ["device", "profile", "tenant"],
                    "properties": {"device": {"type": "string"},
                                   "profile": {"type": ["string", "null"]},
                                   "tenant": {"type": "string"}}})"),
         200,
         "application/json",
         {},
         true,
         [&k](Request& req) {
           const auto& v = req.json.as_object().at("profile");
           std::optional<std::string> profile;
           if (v.is_string()) profile = std::string(v.as_string());
           k.telemetry().profiles().assign(req.tenant, req.params.at("device"), profile,
                                           *req.actor);
           return Response::json(200, json::object{{"device", req.params.at("device")},
                                                   {"profile", v},
                                                   {"tenant", req.tenant}});
         }});

  // ---- Ledger ---------------------------------------------------------------------------------
  r.add({"GET",
         "/v1/ledger",
         "listLedgerEvents",
         "The key's tenant's ledger events in seq order, a page at a time (audit events of calls "
         "answered before this request included); the API keys' stream `keys` for admin keys "
         "only",
         "ledger",
         Role::kViewer,
         0,
         nullptr,
         schema(R"({"type": "object", "required": ["events", "next_after"],
                    "properties": {"events": {"type": "array", "items": {"type": "object",
                      "required": ["seq", "time", "tenant", "stream", "kind", "payload", "prev_hash", "hash"],
                      "properties": {"seq": {"type": "integer"}, "time": {"type": "string", "description": "UTC, milliseconds"},
                        "tenant": {"type": "string"}, "stream": {"type": "string"}, "kind": {"type": "string"},
                        "payload": {"description": "the event's JSON as stored; a string if it is no JSON"},
                        "prev_hash": {"type": "string"}, "hash": {"type": "string"}}}},
                                   "next_after": {"type": ["integer", "null"]}}})"),
         200,
         "application/json",
         {{"after", "only events with seq greater than this (default 0)", "integer",
           json::object{{"minimum", 0}}},
          {"limit", "page size (1-1000, default 100)", "integer", page_limit_schema()},
          {"stream", "only this stream, e.g. mission/m-…"}},
         true,  // waits for the audit events queued so far to be committed
         [&k](Request& req) {
           // Tool-call audit events are committed in groups a few milliseconds after the call
           // answered; a client reading the ledger right after its call must find them.
           k.ledger().flush();
           ledger::ExportFilter f;
           f.tenant = req.tenant;
           f.after_seq = int_query(req, "after", 0, 0, INT64_MAX);
           const auto limit = page_limit(req);
           if (auto it = req.query.find("stream"); it != req.query.end()) f.stream = it->second;
           // Who made which API key, with its hash, is the admins' business.
           if (req.actor->role < Role::kAdmin) {
             if (f.stream == "keys")
               throw HttpError{403, "forbidden",
                               "the ledger's stream keys (API keys) needs the admin role"};
             f.except_stream = "keys";
           }
           f.limit = limit + 1;  // one more tells whether there is a next page
           json::array events;
           std::int64_t last = 0;
           bool more = false;
           k.ledger().for_each(f, [&](const ledger::Event& e) {
             if (static_cast<std::int64_t>(events.size()) >= limit) {
               more = true;
               return;
             }
             events.push_back(e.to_json());
             last = e.seq;
           });
           auto res = Response::json(
               200, json::object{{"events", std::move(events)},
                                 {"next_after", more ? json::value(last) : json::value(nullptr)}});
           if (more) link_next_page(res, req, "after", std::to_string(last));
           return res;
         }});
  // What routes answer besides the statuses their shape implies, for /openapi.json.
  const std::map<std::string, std::map<int, std::string>> errors = {
      {"ingestTelemetry",
       {{400, "malformed envelope or payload (malformed, unsupported_alg, bad_payload)"},
        {401,
         "no or a bad API key; or the device key is unknown, revoked or expired, or the "
         "signature does not verify (unknown_key, revoked_key, expired_key, bad_signature)"},
        {403,
         "the API key's role is too low; or the key belongs to another device than the "
         "path's (wrong_device)"},
        {404, ""},  // the path names a stream, not something looked up
        {409, "replayed_sequence, stale_sequence, stale_boot"},
        {413, "oversized_batch (too many samples or bytes)"},
        {422, "bad_samples, clock_skew"}}},
      {"createSpeech", {{404, "no such voice (GET /v1/audio/voices lists them)"}}},
      {"invokeTool",
       {{404, "unknown_tool; or the tool's not_found or unknown_voice"},
        {413, "the body is too large; or the tool's input_too_large"},
        {422, "the body violates the schema, or the tool refused its input (invalid_input)"},
        {429, "rate_limited: over the tenant's tool-call rate (policy)"},
        {500, "internal: the tool failed unexpectedly"},
        {502, "the tool failed with its own error code (details.tool)"},
        {503, "unavailable: the tool or its provider is down for now"},
        {504, "timeout: the tool did not answer in time"}}},
      {"createMission",
       {{200,
         "the Idempotency-Key (or idempotency_key) of a mission made before, with the same "
         "template and inputs: that mission, \"created\": false"},
        {409, "the idempotency key was used with another template or inputs (conflict)"}}},
      {"approveMission", {{409, "the mission is not QUARANTINED (invalid_state)"}}},
      {"cancelMission", {{409, "the mission has finished (invalid_state)"}}},
      {"retryMission", {{409, "the mission is not RETRY or FAILED (invalid_state)"}}},
      {"archiveProfile",
       {{409, "a device roasts to the profile (conflict): clear its assignment first"}}},
      {"addDevice",
       {{409,
         "the device has a key already (rotate it instead), or the public key is registered "
         "already (conflict)"}}},
      {"rotateDeviceKey",
       {{409, "the new public key is registered already, for this device or another (conflict)"}}},
      {"markSessionEvent",
       {{409, "clear: true for an event the session has no mark of (invalid_state)"}}},
      {"revokeDeviceKey", {{409, "the key is revoked already"}}},
      {"listSessions", {{422, "a query parameter out of range"}}},
      {"saveProfile",
       {{200,
         "the same content and title as the newest version: nothing saved, that version "
         "with \"unchanged\": true"}}},
      {"assignDeviceProfile", {{409, "the profile is archived (restore it first)"}}},
      {"getMissionArtifact",
       {{304, "If-None-Match named the file's ETag: the client has it already"}}},
      {"getSessionSamples",
       {{304, "If-None-Match named the answer's ETag: nothing changed since the client's copy"}}},
      {"getSessionReport",
       {{304, "If-None-Match named the answer's ETag: nothing changed since the client's copy"}}},
      {"getSessionSummaryAudio",
       {{304, "If-None-Match named the file's ETag: the client has it already"},
        {409,
         "no summary yet (not_ready): the session is open, or its report is under way or "
         "QUARANTINED for an approver"}}},
  };
  // Headers routes read and answers carry, for /openapi.json.
  using Header = Route::QueryParam;
  const Header if_none_match{"If-None-Match",
                             "the ETag of the copy the client has: 304 without the bytes"};
  const Header etag{"ETag", "the file's SHA-256, quoted", "string", nullptr, true};
  const Header attachment{"Content-Disposition", "attachment; filename=\"…\": the file's name",
                          "string", nullptr, true};
  const Header if_none_match_answer{
      "If-None-Match", "the ETag of the answer the client has: 304 without the bytes if unchanged"};
  const Header answer_etag{"ETag", "a hash of the answer's bytes, quoted", "string", nullptr, true};
  const Header no_cache{"Cache-Control",
                        "no-cache: ask each time, with If-None-Match (an open session's answer "
                        "changes)",
                        "string", nullptr, true};
  const Header no_store{"Cache-Control", "no-store: the answer may carry a secret key", "string",
                        nullptr, true};
  const Header next_page{"Link",
                         "<the same request for the next page>; rel=\"next\" — on a full page "
                         "only"};
  const std::map<std::string, std::vector<Header>> request_headers = {
      {"createMission",
       {{"Idempotency-Key",
         "1-200 characters; a retry with the same key, template and inputs answers the mission "
         "made the first time (200, created: false); wins over the body's idempotency_key",
         "string", json::object{{"minLength", 1}, {"maxLength", 200}}}}},
      {"getMissionArtifact", {if_none_match}},
      {"getSessionSummaryAudio", {if_none_match}},
      {"getSessionSamples", {if_none_match_answer}},
      {"getSessionReport", {if_none_match_answer}},
  };
  const std::map<std::string, std::vector<Header>> answer_headers = {
      {"listMissions", {next_page}},
      {"listSessions", {next_page}},
      {"listLedgerEvents", {next_page}},
      {"getMissionArtifact", {etag, attachment}},
      {"getSessionSummaryAudio", {etag, attachment}},
      {"getSessionSamples", {answer_etag, no_cache}},
      {"getSessionReport", {answer_etag, no_cache}},
      {"addDevice", {no_store}},
      {"rotateDeviceKey", {no_store}},
      {"createSpeech",
       {{"X-Kiln-Voice", "the voice that spoke", "string", nullptr, true},
        {"X-Kiln-Audio-Seconds", "the audio's length (not on a streamed answer)", "number"}}},
      {"exportSessionAlog",
       {attachment,
        {"X-Kiln-FCs-Estimated",
         "true when the session's FCs is only the detector's estimate (not written to the "
         "file)",
         "boolean", nullptr, true}}},
      {"exportProfileAlog", {attachment}},
  };
  for (auto& route : r.routes_mutable()) {
    if (auto it = errors.find(route.operation); it != errors.end())
      route.documented_errors = it->second;
    if (auto it = request_headers.find(route.operation); it != request_headers.end())
      route.header_params = it->second;
    if (auto it = answer_headers.find(route.operation); it != answer_headers.end())
      route.response_headers = it->second;
    if (route.operation == "ingestTelemetry")
      route.too_large = [&k](Request& req, std::size_t bytes) {
        auto res = k.telemetry().ingestor().refuse_oversized(
            req.tenant, req.params.at("device"), bytes, bool_query(req, "dry_run", false));
        return error(res.http_status(), res.reason, res.message, res.to_json());
      };
  }
  // Operations routes are public unless the deployment lists fewer (server.public_routes).
  Router out;
  for (auto route : r.routes()) {
    if (!route.role && std::find(ctx.public_paths.begin(), ctx.public_paths.end(), route.pattern) ==
                           ctx.public_paths.end())
      route.role = Role::kViewer;
    out.add(std::move(route));
  }
  return out;
}

}  // namespace kiln::http
