// The HTTP route table: plain request/response values, routes with their method, path pattern,
// required role, body limit and JSON schemas. The server dispatches on this table and
// /openapi.json is generated from it, so the two cannot disagree. No Beast here: handlers and
// routes compile without it (docs/architecture/http.md).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "missions/service.hpp"

namespace kiln::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as received
  std::string path;    // decoded path, without the query (routes match the path as received,
                       // each segment decoded once: an id may hold '/', '%' or '+')
  std::map<std::string, std::string> query;
  std::string query_repeated;  // a query parameter given more than once (the first such), if any
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, as received
  std::string body;
  std::string request_id;
  // Filled by the router:
  std::map<std::string, std::string> params;  // {name} path parameters
  std::optional<missions::Actor> actor;       // the API key's identity (authenticated routes)
  std::string tenant;                         // the API key's tenant
  boost::json::value json;                    // the parsed body (routes with a request schema)
  std::string header(std::string_view name) const;
};

// Hands one piece of a streamed body to the client; false once the client is gone (stop then).
using ChunkWriter = std::function<bool(std::string_view)>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // A streamed body (HTTP/1.1 chunked transfer encoding): when set, `body` is ignored and the
  // server calls this off the I/O threads; each write is sent as one chunk as soon as it is made.
  std::function<void(const ChunkWriter&)> stream;
  static Response json(int status, const boost::json::value& v);
  static Response text(int status, std::string body, std::string content_type = "text/plain");
};

// The one error envelope: {"error": {"code", "message", "details"}}.
Response error(int status, std::string code, std::string message,
               boost::json::value details = nullptr);

// Thrown by handlers for a clean 4xx/5xx.
struct HttpError {
  int status;
  std::string code;
  std::string message;
  boost::json::value details = nullptr;
};

using Handler = std::function<Response(Request&)>;
// An asynchronous handler answers through `respond`, exactly once: at once, or later from any
// thread (e.g. once a telemetry batch is durable) — no thread waits meanwhile. It runs on the
// I/O thread, so it must not block; `req` stays valid until it has answered. A handler that
// throws must not have answered (the exception becomes the answer).
using Respond = std::function<void(Response)>;
using AsyncHandler = std::function<void(Request&, Respond respond)>;

struct Route {
  std::string method;
  std::string pattern;    // "/v1/missions/{id}:approve"
  std::string operation;  // OpenAPI operationId, e.g. "approveMission"
  std::string summary;
  std::string tag;
  std::optional<missions::Role> role;  // nullopt: public (no key needed)
  std::size_t body_limit = 0;          // 0: the server default
  boost::json::value request_schema;   // null: no JSON body
  boost::json::value response_schema;  // the 2xx body
  int success_status = 200;
  std::string response_content_type = "application/json";
  // Query parameters: name, description and the JSON Schema type of the value (integer and
  // boolean ones are checked by the handler; the type is what /openapi.json says), with what
  // else the handler holds the value to (enum, minimum, maximum, lengths): a test asks the
  // server at those bounds. A declared parameter given empty (?stream=) is refused.
  struct QueryParam {
    std::string name, description, type = "string";
    boost::json::value schema = nullptr;  // an object merged into {"type": type}
    bool required = false;                // a response header every such answer carries
  };
  std::vector<QueryParam> query_params;
  bool blocking = false;  // may wait (tool calls): runs off the I/O threads
  Handler handler;
  // For a blocking route: true when this request will not wait after all (e.g. a non-blocking
  // tool), so it runs on the I/O thread without a hand-off.
  std::function<bool(const Request&)> runs_inline = nullptr;
  // A raw (non-JSON) request body of this media type, e.g. "application/cose": the router
  // refuses another Content-Type with 415 and /openapi.json documents a binary body.
  std::string raw_body_type = {};
  // Set instead of `handler` for a route that answers later without holding a thread.
  AsyncHandler async_handler = nullptr;
  // Error statuses of this route beyond those /openapi.json derives from its shape (auth, body,
  // path parameters); an empty text removes a derived one the route never answers.
  std::map<int, std::string> documented_errors = {};
  // The answer to a body over `body_limit` (after the key and Content-Type were admitted), in
  // place of the generic 413 payload_too_large: e.g. ingestion's oversized_batch, counted as its
  // other refusals. `bytes` is the Content-Length, or 0 when the body was chunked.
  std::function<Response(Request&, std::size_t bytes)> too_large = nullptr;
  // Request headers the route reads (Idempotency-Key, If-None-Match) and response headers its
  // success carries (Link, ETag), for /openapi.json: name, description, type.
  std::vector<QueryParam> header_params = {};
  std::vector<QueryParam> response_headers = {};
};

// Resolves an API key to an identity; nullopt when unknown or revoked.
struct Identity {
  std::string tenant;
  missions::Actor actor;
};
using Authenticator = std::function<std::optional<Identity>(std::string_view bearer)>;

class Router {
 public:
  void add(Route r);
  struct Match {
    const Route* route = nullptr;
    std::size_t index = 0;  // the route's; for a path without the method, its first route's
    std::map<std::string, std::string> params;
    std::vector<std::string> allowed;  // methods of the path when the method did not match
  };
  Match match(std::string_view method, std::string_view path) const;
  // Authenticates, checks the role, parses and validates the JSON body, runs the handler and
  // turns HttpError / MissionError / exceptions into the error envelope.
  Response dispatch(const Route& route, Request& req, const Authenticator& auth) const;
  // The same for a route with an async_handler: `respond` gets the answer, possibly on another
  // thread, possibly before this returns.
  void dispatch_async(const Route& route, Request& req, const Authenticator& auth,
                      Respond respond) const;
  // The answer to a body over the route's limit that was not read: the route's `too_large`
  // once the request is admitted (key, role, Content-Type), else nullopt (the generic 413).
  std::optional<Response> refuse_too_large(const Route& route, Request& req,
                                           const Authenticator& auth, std::size_t bytes) const;
  // The API key's refusal (none, malformed, unknown or revoked, role too low), before the body
  // is read; nullopt when the key is admitted (the request's actor and tenant are then set, and
  // admission does not look the key up again) or the route is public.
  std::optional<Response> refuse_key(const Route& route, Request& req,
                                     const Authenticator& auth) const;
  // The error envelope for an exception a handler threw (HttpError, MissionError: their status;
  // anything else: 500, logged with the request id).
  static Response failure(std::exception_ptr error, const Request& req);
  const std::vector<Route>& routes() const { return routes_; }
  std::vector<Route>& routes_mutable() { return routes_; }
  // OpenAPI 3.1 for every route.
  boost::json::object openapi(const std::string& version) const;
  // kiln_http_api_key_refusals_total{reason}: requests refused for their API key (apart from
  // a device's signature refused at ingestion, which shares the 401 status).
  void expose(std::string& out) const;

 private:
  // Authentication, role, body media type and schema: the answer when the request is refused.
  std::optional<Response> admit(const Route& route, Request& req, const Authenticator& auth) const;
  std::vector<Route> routes_;
  std::vector<std::vector<std::string>> segments_;  // each route's pattern, split once
  // API-key refusals: no key, not "Bearer KEY", unknown or revoked, role too low.
  enum KeyRefusal { kKeyMissing, kKeyMalformed, kKeyInvalid, kKeyRole, kKeyRefusals };
  using KeyRefusals = std::array<std::atomic<std::uint64_t>, kKeyRefusals>;
  std::unique_ptr<KeyRefusals> key_refusals_ = std::make_unique<KeyRefusals>();  // movable
};

// Query and path helpers.
// %XX escapes; `plus_is_space` for a query (form encoding) — a path keeps its '+'.
std::string url_decode(std::string_view s, bool plus_is_space = true);
std::string url_encode(std::string_view s);  // a query value: all but A-Z a-z 0-9 - _ . ~
// `repeated`, when given, gets the first name that comes more than once (its last value is in
// the map).
std::map<std::string, std::string> parse_query(std::string_view q, std::string* repeated = nullptr);

}  // namespace kiln::http
