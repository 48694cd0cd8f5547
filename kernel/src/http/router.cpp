#include "http/router.hpp"

#include <algorithm>
#include <atomic>
#include <future>

#include <spdlog/spdlog.h>

#include "common/json_text.hpp"
#include "common/strings.hpp"
#include "runtime/json_schema.hpp"
#include "storage/sqlite.hpp"

namespace kiln::http {
namespace json = boost::json;

std::string Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

Response Response::json(int status, const json::value& v) {
  Response r;
  r.status = status;
  // Numbers as people read them (common/json_text.hpp); a path or field echoed may not be UTF-8.
  r.body = common::to_valid_utf8(common::json_text(v));
  return r;
}

Response Response::text(int status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

Response error(int status, std::string code, std::string message, json::value details) {
  // `details` is always an object, so a client reads details.field without a null check.
  if (details.is_null())
    details = json::object{};
  else if (!details.is_object())
    details = json::object{{"value", std::move(details)}};
  return Response::json(status,
                        json::object{{"error", json::object{{"code", std::move(code)},
                                                            {"message", std::move(message)},
                                                            {"details", std::move(details)}}}});
}

std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view q, std::string* repeated) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    auto eq = part.find('=');
    if (!part.empty()) {
      auto name = url_decode(part.substr(0, eq));
      auto [at, added] = out.insert_or_assign(
          std::move(name), eq == std::string_view::npos ? "" : url_decode(part.substr(eq + 1)));
      if (!added && repeated && repeated->empty()) *repeated = at->first;
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

namespace {

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 1;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

// One pattern segment against one path segment: "literal", "{name}" or "{name}:verb".
bool match_segment(std::string_view pat, std::string_view seg,
                   std::map<std::string, std::string>& params) {
  if (pat.empty() || pat.front() != '{')
    return pat == seg || (seg.find('%') != std::string_view::npos && pat == url_decode(seg, false));
  auto close = pat.find('}');
  std::string name(pat.substr(1, close - 1));
  std::string_view suffix = pat.substr(close + 1);
  if (suffix.empty()) {
    if (seg.empty() || seg.find(':') != std::string_view::npos) return false;
    params[name] = url_decode(seg, false);
    return true;
  }
  if (seg.size() <= suffix.size() || seg.substr(seg.size() - suffix.size()) != suffix) return false;
  params[name] = url_decode(seg.substr(0, seg.size() - suffix.size()), false);
  return true;
}

int mission_status(missions::MissionError::Code c) {
  using C = missions::MissionError::Code;
  switch (c) {
    case C::kNotFound:
      return 404;
    case C::kForbidden:
      return 403;
    case C::kInvalidInput:
      return 422;
    case C::kConflict:
    case C::kInvalidState:
    case C::kLeaseLost:
      return 409;
  }
  return 500;
}

}  // namespace

void Router::add(Route r) {
  std::vector<std::string> segs;
  for (auto s : segments(r.pattern)) segs.emplace_back(s);
  segments_.push_back(std::move(segs));
  routes_.push_back(std::move(r));
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match m;
  const auto segs = segments(path);
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const Route& r = routes_[i];
    const auto& pats = segments_[i];
    if (pats.size() != segs.size()) continue;
    std::map<std::string, std::string> params;
    bool ok = true;
    for (std::size_t s = 0; ok && s < pats.size(); ++s)
      ok = match_segment(pats[s], segs[s], params);
    if (!ok) continue;
    // HEAD is GET without the body (RFC 9110 §9.3.2): every GET route answers it.
    if (r.method == method || (method == "HEAD" && r.method == "GET")) {
      m.route = &r;
      m.index = i;
      m.params = std::move(params);
      m.allowed.clear();
      return m;
    }
    // The path's first route answers for the path (its 405 is counted there, not as unmatched).
    if (m.allowed.empty()) m.index = i;
    for (const std::string_view allowed : {std::string_view(r.method), std::string_view("HEAD")}) {
      if (allowed == "HEAD" && r.method != "GET") continue;
      if (std::find(m.allowed.begin(), m.allowed.end(), allowed) == m.allowed.end())
        m.allowed.emplace_back(allowed);
    }
  }
  std::sort(m.allowed.begin(), m.allowed.end());
  return m;
}

std::optional<Response> Router::refuse_key(const Route& route, Request& req,
                                           const Authenticator& auth) const {
  if (route.role && !req.actor) {
    // A 401 names the scheme it wants (RFC 9110 §11.6.1).
    auto unauthenticated = [](const char* error_code, std::string message) {
      auto r = error(401, "unauthenticated", std::move(message));
      r.headers.emplace_back("WWW-Authenticate",
                             std::string("Bearer realm=\"kiln\"") +
                                 (error_code ? std::string(", error=\"") + error_code + "\"" : ""));
      return r;
    };
    // Two keys: which one acts is a guess (a proxy may have checked the other).
    if (std::count_if(req.headers.begin(), req.headers.end(),
                      [](const auto& h) { return h.first == "authorization"; }) > 1) {
      (*key_refusals_)[kKeyMalformed].fetch_add(1, std::memory_order_relaxed);
      return error(400, "bad_request",
                   "the request has more than one Authorization header; send one key");
    }
    const std::string authz = req.header("authorization");
    if (authz.empty()) {
      (*key_refusals_)[kKeyMissing].fetch_add(1, std::memory_order_relaxed);
      return unauthenticated(
          nullptr,
          "this route needs an API key: send 'Authorization: Bearer KEY' (an administrator "
          "creates keys with `kiln keys create --tenant T --role R`)");
    }
    if (authz.size() < 8 || common::to_lower(authz.substr(0, 7)) != "bearer ") {
      (*key_refusals_)[kKeyMalformed].fetch_add(1, std::memory_order_relaxed);
      return unauthenticated("invalid_request", "the Authorization header must be 'Bearer KEY'");
    }
    auto id = auth ? auth(std::string_view(authz).substr(7)) : std::nullopt;
    if (!id) {
      (*key_refusals_)[kKeyInvalid].fetch_add(1, std::memory_order_relaxed);
      return unauthenticated("invalid_token", "the API key is not valid (unknown or revoked)");
    }
    // Known from here on, refused or not: the access log names who asked.
    req.actor = id->actor;
    req.tenant = id->tenant;
    if (id->actor.role < *route.role) {
      (*key_refusals_)[kKeyRole].fetch_add(1, std::memory_order_relaxed);
      return error(403, "forbidden",
                   route.method + " " + route.pattern + " needs the " +
                       std::string(missions::to_string(*route.role)) + " role; this key has " +
                       std::string(missions::to_string(id->actor.role)));
    }
  }
  return std::nullopt;
}

std::optional<Response> Router::admit(const Route& route, Request& req,
                                      const Authenticator& auth) const {
  if (auto refused = refuse_key(route, req, auth)) return refused;
  // One value a parameter: which of two a route would take is a guess (?after=1&after=2).
  if (!req.query_repeated.empty())
    return error(
        422, "invalid_request",
        "query parameter '" + req.query_repeated + "' is given more than once; give it once",
        json::object{{"field", "query." + req.query_repeated}});
  // A query parameter the route does not take is a typo or a filter it does not have
  // (?state=open on sessions): said, not ignored.
  for (const auto& [name, value] : req.query) {
    const auto known = std::find_if(route.query_params.begin(), route.query_params.end(),
                                    [&](const Route::QueryParam& q) { return q.name == name; });
    if (known != route.query_params.end() && value.empty())
      return error(422, "invalid_request",
                   "query parameter '" + name + "' is empty: give it a value, or leave it out (" +
                       name + ": " + known->description + ")",
                   json::object{{"field", "query." + name}});
    if (known != route.query_params.end()) continue;
    std::string takes;
    for (const auto& q : route.query_params) takes += (takes.empty() ? "" : ", ") + q.name;
    return error(422, "invalid_request",
                 "unknown query parameter '" + name + "'; " + route.method + " " + route.pattern +
                     (takes.empty() ? std::string(" takes none") : " takes: " + takes),
                 json::object{{"field", "query." + name}});
  }
  if (!route.request_schema.is_null()) {
    std::string ct = common::to_lower(req.header("content-type"));
    if (auto semi = ct.find(';'); semi != std::string::npos) ct.resize(semi);
    while (!ct.empty() && ct.back() == ' ') ct.pop_back();
    if (req.body.empty() && (ct.empty() || ct == "application/json")) {
      // No body is no fields (curl -X POST -H 'Content-Type: application/json' sends none): the
      // route's schema says what is missing, rather than "malformed JSON".
      req.json = json::object{};
    } else {
      if (ct != "application/json")
        return error(415, "unsupported_media_type",
                     "send the body as JSON with 'Content-Type: application/json' (got '" +
                         (ct.empty() ? std::string("none") : ct) + "')");
      auto parsed = common::parse_strict(req.body);
      if (parsed.ec)
        return error(400, "malformed_json", "the body is not valid JSON: " + parsed.ec.message());
      if (const auto& twice = parsed.duplicate)
        return error(422, "invalid_request",
                     "the body gives the key " + common::to_valid_utf8(*twice) +
                         " twice in one object; give it once",
                     json::object{{"field", "body." + common::to_valid_utf8(*twice)}});
      req.json = std::move(parsed.value);
    }
    if (auto err = runtime::validate_json(route.request_schema, req.json, "body")) {
      auto colon = err->find(':');
      return error(422, "invalid_request", *err, json::object{{"field", err->substr(0, colon)}});
    }
  }
  if (!route.raw_body_type.empty()) {
    std::string ct = common::to_lower(req.header("content-type"));
    if (auto semi = ct.find(';'); semi != std::string::npos) ct.resize(semi);
    while (!ct.empty() && ct.back() == ' ') ct.pop_back();
    if (ct != route.raw_body_type)
      return error(415, "unsupported_media_type",
                   "send the body with 'Content-Type: " + route.raw_body_type + "' (got '" +
                       (ct.empty() ? std::string("none") : ct) + "')");
  }
  return std::nullopt;
}

void Router::expose(std::string& out) const {
  out +=
      "# HELP kiln_http_api_key_refusals_total Requests refused for their API key: none sent, "
      "not 'Bearer KEY', unknown or revoked (401), or a role too low for the route (403). A "
      "device key refused at ingestion is kiln_telemetry_rejected_total.\n"
      "# TYPE kiln_http_api_key_refusals_total counter\n";
  static constexpr std::array<const char*, kKeyRefusals> kReasons = {"missing", "malformed",
                                                                     "invalid", "role"};
  for (std::size_t i = 0; i < kReasons.size(); ++i)
    out += std::string("kiln_http_api_key_refusals_total{reason=\"") + kReasons[i] + "\"} " +
           std::to_string((*key_refusals_)[i].load(std::memory_order_relaxed)) + "\n";
}

std::optional<Response> Router::refuse_too_large(const Route& route, Request& req,
                                                 const Authenticator& auth,
                                                 std::size_t bytes) const {
  if (!route.too_large) return std::nullopt;
  try {
    if (auto refused = admit(route, req, auth)) return refused;
    return route.too_large(req, bytes);
  } catch (...) {
    return failure(std::current_exception(), req);
  }
}

Response Router::failure(std::exception_ptr error_ptr, const Request& req) {
  try {
    std::rethrow_exception(error_ptr);
  } catch (const HttpError& e) {
    return error(e.status, e.code, e.message, e.details);
  } catch (const storage::StorageError& e) {
    // The database failed the request (a full disk, a lock held elsewhere, an I/O error): nothing
    // was stored, and a client that retries later (a recorder's spool) loses nothing. The details
    // are the operator's (the log, GET /ready), not the caller's; the kind of failure is said.
    spdlog::error("request {} {} {}: {}", req.request_id, req.method, req.path, e.what());
    const int primary = e.sqlite_code() & 0xff;            // an extended code's primary one
    const char* kind = primary == 13 ? "its disk is full"  // SQLITE_FULL
                       : primary == 5 || primary == 6
                           ? "another writer holds its database"      // BUSY, LOCKED
                       : primary == 10 ? "an I/O error on its disk"   // SQLITE_IOERR
                       : primary == 8  ? "its database is read-only"  // READONLY
                                       : "its database failed";
    const bool reads_only = req.method == "GET" || req.method == "HEAD";
    return error(503, "storage_unavailable",
                 std::string("the server's storage could not ") +
                     (reads_only ? "be read" : "take this request") + ": " + kind +
                     " (GET /ready says whether it is refusing writes; the server's log has "
                     "request id " +
                     req.request_id + "); nothing was " + (reads_only ? "changed" : "stored") +
                     ", retry later");
  } catch (const missions::MissionError& e) {
    return error(
        mission_status(e.code()), std::string(e.code_name()), e.what(),
        e.field().empty() ? json::value(nullptr) : json::object{{"field", "body." + e.field()}});
  } catch (const std::exception& e) {
    spdlog::error("request {} {} {}: {}", req.request_id, req.method, req.path, e.what());
  } catch (...) {
    spdlog::error("request {} {} {}: unknown error", req.request_id, req.method, req.path);
  }
  return error(
      500, "internal",
      "the server failed to handle the request (request id " + req.request_id + " in its log)");
}

Response Router::dispatch(const Route& route, Request& req, const Authenticator& auth) const {
  if (!route.handler && route.async_handler) {
    // An asynchronous route called synchronously (tests, tools; never on an I/O thread or the
    // ledger's): wait for its first answer here.
    auto answer = std::make_shared<std::promise<Response>>();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto got = answer->get_future();
    dispatch_async(route, req, auth, [answer, answered](Response r) {
      if (!answered->exchange(true)) answer->set_value(std::move(r));
    });
    return got.get();
  }
  try {
    if (auto refused = admit(route, req, auth)) return std::move(*refused);
    return route.handler(req);
  } catch (...) {
    return failure(std::current_exception(), req);
  }
}

void Router::dispatch_async(const Route& route, Request& req, const Authenticator& auth,
                            Respond respond) const {
  std::optional<Response> now;
  try {
    now = admit(route, req, auth);
    if (!now) {
      route.async_handler(req, respond);  // from here on the handler answers
      return;
    }
  } catch (...) {
    now = failure(std::current_exception(), req);
  }
  respond(std::move(*now));
}

json::object Router::openapi(const std::string& version) const {
  const json::value error_ref = json::object{{"$ref", "#/components/schemas/Error"}};
  auto error_response = [&](const std::string& what) {
    return json::object{
        {"description", what},
        {"content", json::object{{"application/json", json::object{{"schema", error_ref}}}}}};
  };
  auto value_schema = [](const Route::QueryParam& q) {
    json::object s{{"type", q.type}};
    if (q.schema.is_object())
      for (const auto& kv : q.schema.as_object()) s[kv.key()] = kv.value();
    return s;
  };
  auto header = [](const std::string& description, const std::string& type = "string") {
    return json::object{{"description", description}, {"schema", json::object{{"type", type}}}};
  };
  // Every 503 says when to ask again (draining, storage failing, a provider down).
  const json::object retry_after{
      {"Retry-After", header("seconds to wait before asking again", "integer")}};
  const json::object www_authenticate{
      {"WWW-Authenticate", header("Bearer realm=\"kiln\"; with error=\"invalid_token\" (a key that "
                                  "is not valid) or \"invalid_request\" (no Bearer scheme)")}};
  json::object paths;
  for (const auto& r : routes_) {
    json::object op{{"operationId", r.operation},
                    {"summary", r.summary},
                    {"tags", json::array{json::value(r.tag)}}};
    json::array params;
    for (std::size_t pos = r.pattern.find('{'); pos != std::string::npos;
         pos = r.pattern.find('{', pos + 1)) {
      auto close = r.pattern.find('}', pos);
      params.push_back(json::object{{"name", r.pattern.substr(pos + 1, close - pos - 1)},
                                    {"in", "path"},
                                    {"required", true},
                                    {"schema", json::object{{"type", "string"}}}});
    }
    for (const auto& [where, list] :
         {std::pair{"query", &r.query_params}, std::pair{"header", &r.header_params}})
      for (const auto& q : *list)
        params.push_back(json::object{{"name", q.name},
                                      {"in", where},
                                      {"required", false},
                                      {"description", q.description},
                                      {"schema", value_schema(q)}});
    if (!params.empty()) op["parameters"] = std::move(params);
    if (!r.request_schema.is_null())
      op["requestBody"] = json::object{
          {"required", false},
          {"content",
           json::object{{"application/json", json::object{{"schema", r.request_schema}}}}}};
    if (!r.raw_body_type.empty()) {
      op["requestBody"] = json::object{
          {"required", true},
          {"content",
           json::object{{r.raw_body_type,
                         json::object{{"schema",
                                       json::object{{"type", "string"}, {"format", "binary"}}}}}}}};
    }
    json::object responses;
    json::object ok{{"description", "success"}};
    if (!r.response_schema.is_null()) {
      // A route may answer in several media types ("audio/wav, audio/mpeg"): each gets the schema.
      json::object content;
      std::string types = r.response_content_type;
      for (std::size_t pos = 0; pos <= types.size();) {
        std::size_t comma = types.find(',', pos);
        if (comma == std::string::npos) comma = types.size();
        std::string t = types.substr(pos, comma - pos);
        while (!t.empty() && t.front() == ' ') t.erase(0, 1);
        while (!t.empty() && t.back() == ' ') t.pop_back();
        // A page (text/html) is text, whatever the JSON answer's schema.
        if (!t.empty())
          content[t] = json::object{{"schema", t.rfind("text/", 0) == 0
                                                   ? json::value(json::object{{"type", "string"}})
                                                   : r.response_schema}};
        pos = comma + 1;
      }
      ok["content"] = std::move(content);
    }
    if (!r.response_headers.empty()) {
      json::object headers;
      for (const auto& h : r.response_headers) {
        auto o = header(h.description, h.type);
        if (h.required) o["required"] = true;
        headers[h.name] = std::move(o);
      }
      ok["headers"] = std::move(headers);
    }
    const json::value ok_content = ok.contains("content") ? ok.at("content") : json::value();
    const json::value ok_headers = ok.contains("headers") ? ok.at("headers") : json::value();
    responses[std::to_string(r.success_status)] = std::move(ok);
    if (r.role) {
      responses["400"] = error_response("a malformed request, e.g. two Authorization headers");
      auto unauthenticated = error_response("missing or invalid API key");
      unauthenticated["headers"] = www_authenticate;
      responses["401"] = std::move(unauthenticated);
      responses["403"] = error_response("the key's role is too low");
      op["security"] = json::array{json::object{{"bearerAuth", json::array{}}}};
      op["x-kiln-role"] = std::string(missions::to_string(*r.role));
    }
    if (!r.request_schema.is_null()) {
      responses["400"] = error_response("malformed JSON");
      responses["413"] = error_response("body too large");
      responses["415"] = error_response("not application/json");
      responses["422"] = error_response("the body violates the schema");
    }
    if (!r.raw_body_type.empty()) {
      responses["413"] = error_response("body too large");
      responses["415"] = error_response("not " + r.raw_body_type);
    }
    if (r.pattern.find('{') != std::string::npos)
      responses["404"] = error_response("not found (or another tenant's)");
    // Every route refuses a query parameter it does not take, a body over its limit, and
    // answers 503 while the server drains.
    if (!responses.contains("422"))
      responses["422"] = error_response("a query parameter that is unknown, empty or not valid");
    if (!responses.contains("413")) responses["413"] = error_response("a body over the limit");
    auto unavailable = error_response(
        "the server is shutting down (draining), or cannot serve this now: ask again after "
        "Retry-After");
    unavailable["headers"] = retry_after;
    for (const auto& [status, text] : r.documented_errors) {
      if (text.empty()) {
        responses.erase(std::to_string(status));
      } else if (status < 300) {  // another success (e.g. 200 for a save that changed nothing)
        json::object other{{"description", text}};
        if (!ok_content.is_null()) other["content"] = ok_content;
        responses[std::to_string(status)] = std::move(other);
      } else if (status < 400) {  // no body (304 Not Modified), the success's validator
        json::object unchanged{{"description", text}};
        if (ok_headers.is_object() && ok_headers.as_object().contains("ETag"))
          unchanged["headers"] = json::object{{"ETag", ok_headers.at("ETag")}};
        responses[std::to_string(status)] = std::move(unchanged);
      } else {
        json::object refusal = error_response(text);
        if (status == 429 || status == 503) refusal["headers"] = retry_after;  // when to ask again
        if (status == 401) refusal["headers"] = www_authenticate;
        responses[std::to_string(status)] = std::move(refusal);
      }
    }
    if (!responses.contains("503")) responses["503"] = std::move(unavailable);
    responses["default"] = error_response(
        "another error, e.g. 405 (with Allow) for a method the path does not answer");
    op["responses"] = std::move(responses);
    std::string method = common::to_lower(r.method);
    auto& path = paths[r.pattern];
    if (path.is_null()) path = json::object{};
    path.as_object()[method] = std::move(op);
  }
  json::object error_schema = json::parse(R"({
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "details"],
      "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                     "details": {"type": "object", "description":
                       "more about the error; field: the request field that was wrong"}}}}})")
                                  .as_object();
  return json::object{
      {"openapi", "3.1.0"},
      {"info",
       json::object{{"title", "kiln"},
                    {"version", version},
                    {"description",
                     "kiln's HTTP API: plugins, nodes, gates, tools, missions, the ledger, "
                     "roaster telemetry (devices, signed envelopes, sessions, their samples, "
                     "reports and predictions) and roast profiles. Every error answers "
                     "{\"error\": {code, message, details}}. Times of readings are epoch "
                     "seconds; event times in reports and predictions are seconds after "
                     "CHARGE. Besides the operations listed, every GET path answers HEAD (the "
                     "GET answer's headers without its body) and every path answers OPTIONS "
                     "(200 with Allow, and a CORS preflight's headers for an allowed origin; "
                     "no key needed); another method is 405 with Allow. An operation with "
                     "security names the least role its key needs in x-kiln-role (recorder < "
                     "viewer < operator < approver < admin)."}}},
      {"servers", json::array{json::object{{"url", "/"}}}},
      {"paths", std::move(paths)},
      {"components",
       json::object{
           {"schemas", json::object{{"Error", std::move(error_schema)}}},
           {"securitySchemes",
            json::object{{"bearerAuth", json::object{{"type", "http"}, {"scheme", "bearer"}}}}}}}};
}

}  // namespace kiln::http
