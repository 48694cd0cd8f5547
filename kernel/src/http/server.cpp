// The only translation unit of the server that includes Beast (compile cost: TOOLCHAIN.md).
#include "http/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/resource.h>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/asio/experimental/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/log.hpp"
#include "kiln/abi.hpp"

namespace kiln::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);
// Descriptors kept beyond server.max_connections: the database, logs, plugins, the listener.
constexpr rlim_t kSpareFiles = 128;

std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  for (std::uint64_t v = rng(), i = 16; i-- > 0; v >>= 4) id[i] = kHex[v & 0xf];
  return id;
}

// The error envelope's code ({"error": {"code": …}}), or "" for another body.
std::string error_code_in(const std::string& body) {
  json::error_code ec;
  const auto v = json::parse(body, ec);
  const auto* e = !ec && v.is_object() ? v.as_object().if_contains("error") : nullptr;
  const auto* code = e && e->is_object() ? e->as_object().if_contains("code") : nullptr;
  return code && code->is_string() ? std::string(code->as_string()) : std::string();
}

// Whole seconds until a refused (429) call may go again: the error's details.retry_after_ms (or
// details.tool.retry_after_ms, a tool invoke's), rounded up; 1 when it says none.
std::int64_t retry_after_s(const std::string& body) {
  json::error_code ec;
  const auto v = json::parse(body, ec);
  const json::value* d = nullptr;
  if (!ec && v.is_object())
    if (const auto* e = v.as_object().if_contains("error"); e && e->is_object())
      d = e->as_object().if_contains("details");
  for (int depth = 0; d && d->is_object() && depth < 2; ++depth) {
    if (const auto* ms = d->as_object().if_contains("retry_after_ms"); ms && ms->is_number())
      return std::max<std::int64_t>(
          1, static_cast<std::int64_t>(std::ceil(ms->to_number<double>() / 1000)));
    d = d->as_object().if_contains("tool");
  }
  return 1;
}

bool acceptable_request_id(std::string_view v) {
  if (v.empty() || v.size() > 128) return false;
  for (char c : v)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

}  // namespace

struct Server::Impl {
  // Why a connection is refused as it is accepted.
  enum class Refusal { kNone, kServer, kClient };
  ServerOptions o;
  const Router& router;
  Authenticator auth;
  std::shared_ptr<HttpMetrics> metrics;
  // One io_context per thread (concurrency hint 1: no locking inside Asio), connections handed
  // out round-robin: a request is read, handled and answered on one thread, which never has to
  // wake another.
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::atomic<std::size_t> next_context{0};
  // Handlers that may wait (tool calls) run here. Destroyed first (~Impl): work still queued
  // there when the drain timed out owns suspended connections, which need their io_context.
  std::optional<asio::thread_pool> blocking;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> draining{false};
  std::atomic<std::int64_t> inflight{0};
  std::atomic<std::size_t> open_connections{0};
  // Connections open per client address, when server.max_connections_per_client caps them.
  std::mutex per_client_mu;
  std::unordered_map<std::string, std::size_t> per_client;
  // Closing with unread input: how long, and how much, is read and dropped first.
  static constexpr auto kLinger = std::chrono::seconds(2);
  static constexpr std::size_t kLingerBytes = 4 * 1024 * 1024;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false;
  const std::string server_header = std::string("kiln/") + kVersion;
  std::shared_ptr<spdlog::logger> access;
  bool json_access = false;  // log.format json: the access log's fields as JSON members

  Impl(ServerOptions opts, const Router& r, Authenticator a, std::shared_ptr<HttpMetrics> m)
      : o(std::move(opts)),
        router(r),
        auth(std::move(a)),
        metrics(std::move(m)),
        blocking(std::in_place, static_cast<std::size_t>(std::max(4, o.threads * 4))) {
    if (o.access_log) access = common::access_logger();
    json_access = common::json_logs();
  }
  // Everything that holds connections, while the lists and counts their Unregister reaches are
  // alive (the threads were joined by drain_and_stop): the blocking pool's queued work, the
  // acceptor, then the contexts with the coroutines left suspended in them.
  ~Impl() {
    blocking.reset();
    acceptor.reset();
    contexts.clear();
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      const std::size_t index = next_context++ % contexts.size();
      auto& target = *contexts[index];
      auto [ec, socket] = co_await acceptor->async_accept(target, kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        // Out of descriptors (or memory) fails every accept until a connection closes: wait a
        // little rather than spin on the error.
        spdlog::warn("http: accept failed: {} (server.max_connections is {})", ec.message(),
                     o.max_connections);
        asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await pause.async_wait(kTuple);
        continue;
      }
      socket.set_option(tcp::no_delay(true));
      Refusal over =
          open_connections.fetch_add(1) >= o.max_connections ? Refusal::kServer : Refusal::kNone;
      std::string client;
      if (o.max_connections_per_client > 0) {
        beast::error_code peer_ec;
        const auto peer = socket.remote_endpoint(peer_ec);
        if (!peer_ec) {
          client = peer.address().to_string();
          std::lock_guard lock(per_client_mu);
          if (++per_client[client] > o.max_connections_per_client && over == Refusal::kNone)
            over = Refusal::kClient;
        }
      }
      if (metrics) {
        metrics->add_open_connections(1);
        if (over != Refusal::kNone) metrics->count_refused_connection();
      }
      asio::co_spawn(target, session(std::move(socket), index, over, std::move(client)),
                     asio::detached);
    }
  }

  // The response in one buffer: status line, headers, body. Written with one async_write,
  // without Beast's serializer (its buffer sequences showed up in profiles of /health).
  // `head_only`: the answer to a HEAD request, the headers of the GET answer without its body.
  std::string serialize(Response&& r, unsigned version, bool keep_alive,
                        const std::string& request_id, bool head_only = false) {
    const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(r.status));
    std::string out;
    out.reserve(160 + r.body.size() + request_id.size() + r.content_type.size());
    out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(r.status);
    out += ' ';
    out.append(reason.data(), reason.size());
    out += "\r\nServer: ";
    out += server_header;
    out += "\r\nContent-Type: ";
    out += r.content_type;
    out += "\r\nX-Request-Id: ";
    out += request_id;
    for (const auto& [k, v] : r.headers) {
      out += "\r\n";
      out += k;
      out += ": ";
      out += v;
    }
    if (r.stream) {
      out += "\r\nTransfer-Encoding: chunked";
    } else if (r.status == 304 || r.status == 204) {
      // No body, and no Content-Length either (RFC 9110 §8.6: a 304's would have to be the
      // 200's own length).
    } else {
      out += "\r\nContent-Length: ";
      out += std::to_string(r.body.size());
    }
    if (!keep_alive)
      out += "\r\nConnection: close";
    else if (version == 10)
      out += "\r\nConnection: keep-alive";
    out += "\r\n\r\n";
    if (!head_only) out += r.body;
    return out;
  }

  // The Access-Control-Allow-Origin value for a request from a browser page: its Origin when
  // server.cors_origins lists it, "*" when it lists "*", else empty (no CORS headers).
  std::string cors_origin(const Request& req) const {
    if (o.cors_origins.empty()) return {};
    const std::string origin = req.header("origin");
    if (origin.empty()) return {};
    for (const auto& allowed : o.cors_origins) {
      if (allowed == "*") return "*";
      if (allowed == origin) return origin;
    }
    return {};
  }

  // Whether answers differ by the request's Origin: origins listed one by one ("*" answers all
  // alike).
  bool cors_varies() const {
    return !o.cors_origins.empty() &&
           std::find(o.cors_origins.begin(), o.cors_origins.end(), "*") == o.cors_origins.end();
  }

  // Connection deadlines are checked by one sweep per thread every 100 ms instead of a timer per
  // read and write: a deadline is a plain store, and the timer queue is not touched per request.
  struct Conn {
    tcp::socket socket;
    Clock::time_point deadline = Clock::time_point::max();
  };
  struct ContextConns {
    std::list<Conn*> conns;
  };
  std::vector<std::unique_ptr<ContextConns>> context_conns;

  asio::awaitable<void> sweep(std::size_t index) {
    asio::steady_timer timer(*contexts[index]);
    auto& list = context_conns[index]->conns;
    for (;;) {
      timer.expires_after(std::chrono::milliseconds(100));
      auto [ec] = co_await timer.async_wait(kTuple);
      if (ec) co_return;
      const auto now = Clock::now();
      for (Conn* c : list)
        if (c->deadline < now) {
          boost::system::error_code ignored;
          c->socket.cancel(ignored);
          c->deadline = Clock::time_point::max();
        }
      if (access) access->flush();
    }
  }

  // A streamed body in flight, shared by the producer (on the blocking pool) and the connection's
  // coroutine; either may outlive the other, so everything lives here, owned by both.
  struct Stream {
    explicit Stream(asio::any_io_executor ex) : wake(std::move(ex)) {}
    std::mutex mu;
    std::condition_variable space;  // the producer waits here for the writer to catch up
    std::deque<std::string> chunks;
    bool done = false;        // the producer returned
    bool failed = false;      // ... by throwing: the body is incomplete
    bool gone = false;        // the client or the writer is gone: the producer stops
    asio::steady_timer wake;  // cancelled to wake the writer
  };
  static constexpr std::size_t kStreamQueue = 4;

  // Runs `producer` on the blocking pool and writes what it makes as HTTP chunks. The producer
  // waits while kStreamQueue chunks are unsent, at most request_timeout per chunk (a client that
  // does not read is gone). A producer that throws ends the connection without the final chunk,
  // so the client sees an incomplete body rather than a short one.
  asio::awaitable<std::pair<beast::error_code, std::size_t>> stream_body(
      Conn& conn, std::function<void(const ChunkWriter&)> producer) {
    auto ex = co_await asio::this_coro::executor;
    auto st = std::make_shared<Stream>(ex);
    // If this coroutine is destroyed (shutdown), the producer must not wait for it.
    struct Leave {
      std::shared_ptr<Stream> st;
      ~Leave() {
        std::lock_guard lock(st->mu);
        st->gone = true;
        st->space.notify_all();
      }
    } leave{st};
    const auto timeout = o.request_timeout;
    asio::post(*blocking, [st, ex, timeout, producer = std::move(producer)] {
      auto wake = [&] { asio::post(ex, [st] { st->wake.cancel(); }); };
      bool failed = false;
      try {
        producer([&](std::string_view chunk) {
          std::unique_lock lock(st->mu);
          if (!st->space.wait_for(lock, timeout,
                                  [&] { return st->gone || st->chunks.size() < kStreamQueue; }))
            st->gone = true;  // the client stopped reading
          if (st->gone) return false;
          if (!chunk.empty()) st->chunks.emplace_back(chunk);
          lock.unlock();
          wake();
          return true;
        });
      } catch (const std::exception& e) {
        failed = true;
        spdlog::error("http: a streamed response failed after it started: {}", e.what());
      } catch (...) {
        failed = true;
        spdlog::error("http: a streamed response failed after it started");
      }
      {
        std::lock_guard lock(st->mu);
        st->done = true;
        st->failed = failed;
      }
      wake();
    });
    beast::error_code wec;
    std::size_t sent = 0;
    for (;;) {
      std::string chunk;
      bool finished = false, failed = false;
      {
        std::lock_guard lock(st->mu);
        if (!st->chunks.empty()) {
          chunk = std::move(st->chunks.front());
          st->chunks.pop_front();
          st->space.notify_all();
        } else if (st->done) {
          finished = true;
          failed = st->failed;
        }
      }
      if (finished) {
        if (failed) wec = asio::error::make_error_code(asio::error::connection_aborted);
        break;
      }
      if (chunk.empty()) {
        st->wake.expires_after(std::chrono::milliseconds(200));
        co_await st->wake.async_wait(kTuple);  // cancelled by the producer, or times out
        continue;
      }
      char size[24];
      const int n = std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
      std::array<asio::const_buffer, 3> parts{asio::buffer(size, static_cast<std::size_t>(n)),
                                              asio::buffer(chunk), asio::buffer("\r\n", 2)};
      conn.deadline = Clock::now() + o.request_timeout;
      auto [ec, wn] = co_await asio::async_write(conn.socket, parts, kTuple);
      (void)wn;
      if (ec) {
        wec = ec;
        break;  // `leave` tells the producer
      }
      sent += chunk.size();
    }
    if (!wec) {
      conn.deadline = Clock::now() + o.request_timeout;
      auto [ec, wn] = co_await asio::async_write(conn.socket, asio::buffer("0\r\n\r\n", 5), kTuple);
      (void)wn;
      wec = ec;
    }
    co_return std::make_pair(wec, sent);
  }

  // One connection's requests, one after another. `over`: it is beyond server.max_connections
  // or its client's server.max_connections_per_client, and is answered 503 and closed without
  // reading a request. `client`: its address, when connections are counted per client.
  asio::awaitable<void> session(tcp::socket socket, std::size_t index, Refusal over,
                                std::string client) {
    Conn conn{std::move(socket)};
    auto& stream = conn.socket;
    auto& list = context_conns[index]->conns;
    list.push_front(&conn);
    // However this coroutine ends — its loop done, an exception (Asio's detached spawn drops
    // it), or the server destroyed with the coroutine suspended (~Impl) — the connection leaves
    // the sweep's list, which would otherwise hold a pointer into a freed frame, and the counts.
    struct Unregister {
      Impl& impl;
      std::list<Conn*>& list;
      std::list<Conn*>::iterator at;
      const std::string& client;
      ~Unregister() {
        list.erase(at);
        if (!client.empty()) {
          std::lock_guard lock(impl.per_client_mu);
          if (const auto it = impl.per_client.find(client);
              it != impl.per_client.end() && --it->second == 0)
            impl.per_client.erase(it);
        }
        --impl.open_connections;
        if (impl.metrics) impl.metrics->add_open_connections(-1);
      }
    } unregister{*this, list, list.begin(), client};
    beast::flat_buffer buffer;
    bool unread = false;  // a request is left unread: its body, or all of it (over)
    if (over != Refusal::kNone) {
      auto busy = error(
          503, "too_many_connections",
          over == Refusal::kServer
              ? "the server has " + std::to_string(o.max_connections) +
                    " connections open (server.max_connections); retry later"
              : "this client (" + client + ") has " + std::to_string(o.max_connections_per_client) +
                    " connections open (server.max_connections_per_client); close one or reuse "
                    "it (keep-alive), then retry");
      busy.headers.emplace_back("Retry-After", "1");
      auto res = serialize(std::move(busy), 11, false, new_request_id());
      conn.deadline = Clock::now() + o.request_timeout;
      co_await asio::async_write(stream, asio::buffer(res), kTuple);
      unread = true;
    }
    while (over == Refusal::kNone) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(o.header_limit));
      // Beast's parser refuses a Content-Length over its own default (1 MiB) while reading the
      // header, before the route is known: no limit yet, the route's applies below (413).
      parser.body_limit(boost::none);
      conn.deadline = Clock::now() + o.idle_timeout;
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
      (void)hn;
      if (hec) {
        if (hec == bhttp::error::header_limit) {
          auto res = serialize(error(431, "header_too_large",
                                     "request headers exceed " + std::to_string(o.header_limit) +
                                         " bytes (server.header_limit_bytes)"),
                               11, false, new_request_id());
          if (metrics) metrics->record(metrics->unmatched(), 431, 0);
          conn.deadline = Clock::now() + o.request_timeout;
          co_await asio::async_write(stream, asio::buffer(res), kTuple);
        } else if (hec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
                   hec != bhttp::error::end_of_stream && hec != bhttp::error::partial_message &&
                   hec != bhttp::error::need_more) {
          // A request the parser refuses (method, target, a field, Content-Length or
          // Transfer-Encoding, both at once): said, then the connection is closed — what follows
          // cannot be framed.
          auto res =
              serialize(error(400, "bad_request", "malformed HTTP request: " + hec.message()), 11,
                        false, new_request_id());
          if (metrics) metrics->record(metrics->unmatched(), 400, 0);
          conn.deadline = Clock::now() + o.request_timeout;
          co_await asio::async_write(stream, asio::buffer(res), kTuple);
        }
        break;  // end of stream, idle timeout, reset: close quietly
      }
      const auto start = Clock::now();
      conn.deadline = start + o.request_timeout;  // body, handling and the response
      auto& head = parser.get();
      Request req;
      req.method = std::string(head.method_string());
      req.target = std::string(head.target());
      auto q = req.target.find('?');
      const std::string_view raw_path = std::string_view(req.target).substr(0, q);
      req.path = url_decode(raw_path, false);
      if (q != std::string::npos)
        req.query = parse_query(std::string_view(req.target).substr(q + 1), &req.query_repeated);
      req.headers.reserve(8);
      for (const auto& f : head) {
        std::string name(f.name_string());
        for (auto& c : name)  // ASCII (field names are tokens), not the locale's tolower call
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        req.headers.emplace_back(std::move(name), std::string(f.value()));
      }
      const std::string given_id = req.header("x-request-id");
      req.request_id = acceptable_request_id(given_id) ? given_id : new_request_id();
      auto match = router.match(req.method, raw_path);
      std::size_t limit = o.body_limit;
      if (match.route && match.route->body_limit) limit = match.route->body_limit;

      // A body over the limit: the route's own refusal when it has one (and the key and
      // Content-Type pass), else the generic 413.
      auto too_large = [&](std::size_t bytes, std::string message) {
        if (match.route) {
          req.params = match.params;
          try {
            if (auto own = router.refuse_too_large(*match.route, req, auth, bytes))
              return std::move(*own);
          } catch (...) {
            return Router::failure(std::current_exception(), req);
          }
        }
        return error(413, "payload_too_large", std::move(message));
      };
      Response response;
      bool close_after = false;
      // A body still to come is read only for a key the route admits: a request without one is
      // answered from its headers (the body stays unread), so no one unauthenticated makes the
      // server read and hold up to a route's limit.
      std::optional<Response> key_refused;
      if (match.route && match.route->role && !parser.is_done() &&
          (parser.chunked() || parser.content_length().value_or(0) > buffer.size())) {
        req.params = match.params;
        try {
          key_refused = router.refuse_key(*match.route, req, auth);
        } catch (...) {  // the key store failing (its database locked or gone): said, closed
          key_refused = Router::failure(std::current_exception(), req);
        }
      }
      if (key_refused) {
        response = std::move(*key_refused);
        close_after = unread = true;
      } else if (auto cl = parser.content_length(); cl && *cl > limit) {
        response = too_large(static_cast<std::size_t>(*cl),
                             "the body is " + std::to_string(*cl) +
                                 " bytes; this route accepts at most " + std::to_string(limit));
        close_after = unread = true;
      } else {
        parser.body_limit(limit);
        // The body is parsed from what the header's read already received (usually all of it)
        // before reading on: Beast's async_read completes through a post even when it reads
        // nothing, a round through the scheduler on every request.
        beast::error_code bec;
        while (!parser.is_done() && buffer.size() > 0) {
          const std::size_t used = parser.put(buffer.data(), bec);
          buffer.consume(used);
          if (bec == bhttp::error::need_more) {
            bec = {};
            if (used == 0) break;  // a partial chunk header: the rest comes from the socket
          } else if (bec) {
            break;
          }
        }
        if (!bec && !parser.is_done()) {
          auto [ec, bn] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
          (void)bn;
          bec = ec;
        }
        if (bec == bhttp::error::body_limit) {
          response =
              too_large(0, "the body exceeds " + std::to_string(limit) + " bytes for this route");
          close_after = unread = true;
        } else if (bec &&
                   bec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
                   bec != bhttp::error::end_of_stream && bec != bhttp::error::partial_message) {
          // A body the parser refuses (a chunk size that is no number): said, then closed.
          response = error(400, "bad_request", "malformed HTTP request body: " + bec.message());
          close_after = unread = true;
        } else if (bec) {
          break;  // timeout or reset while reading the body: nothing to answer
        } else {
          req.body = std::move(parser.get().body());
          ++inflight;
          if (draining.load()) {
            response = error(503, "draining", "the server is shutting down; retry elsewhere");
            close_after = true;
          } else if (!match.route) {
            if (!match.allowed.empty()) {
              std::string allow;
              auto methods = match.allowed;
              methods.emplace_back("OPTIONS");
              std::sort(methods.begin(), methods.end());
              for (const auto& m : methods) allow += (allow.empty() ? "" : ", ") + m;
              if (req.method == "OPTIONS") {
                // What the path allows (RFC 9110 §9.3.7); for a CORS preflight from an allowed
                // origin, what a page may send. No key needed: the request itself still needs
                // one.
                response = Response::text(200, "");
                response.headers.emplace_back("Allow", allow);
                if (!cors_origin(req).empty()) {
                  response.headers.emplace_back("Access-Control-Allow-Methods", allow);
                  response.headers.emplace_back(
                      "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, Idempotency-Key, If-None-Match, "
                      "X-Request-Id");
                  response.headers.emplace_back("Access-Control-Max-Age", "600");
                }
              } else {
                response =
                    error(405, "method_not_allowed",
                          req.method + " is not allowed on " + req.path + "; allowed: " + allow);
                response.headers.emplace_back("Allow", allow);
              }
            } else {
              response = error(404, "not_found",
                               "no route " + req.method + " " + req.path +
                                   " (GET /openapi.json "
                                   "lists them)");
            }
          } else {
            req.params = std::move(match.params);
            const Route& route = *match.route;
            if (route.async_handler) {
              // No thread waits: the answer resumes this coroutine on its own I/O thread.
              response =
                  co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(Response)>(
                      [&](auto handler) {
                        auto h = std::make_shared<decltype(handler)>(std::move(handler));
                        auto ex = asio::get_associated_executor(*h, stream.get_executor());
                        // Exactly one answer resumes the coroutine; another is a route's bug.
                        auto answered = std::make_shared<std::atomic<bool>>(false);
                        router.dispatch_async(route, req, auth, [h, ex, answered](Response r) {
                          if (answered->exchange(true)) {
                            spdlog::error("http: a route answered one request twice (ignored)");
                            return;
                          }
                          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
                        });
                      },
                      asio::use_awaitable);
            } else if (route.blocking && !(route.runs_inline && route.runs_inline(req))) {
              response = co_await asio::co_spawn(
                  *blocking,
                  [&]() -> asio::awaitable<Response> {
                    co_return router.dispatch(route, req, auth);
                  },
                  asio::use_awaitable);
            } else {
              response = router.dispatch(route, req, auth);
            }
          }
          if (!response.stream) --inflight;  // a stream counts until its last chunk
        }
      }
      // HTTP/1.0 has no chunked encoding: a streamed body is collected (off the I/O thread) and
      // sent whole.
      if (response.stream && head.version() < 11) {
        auto produce = std::move(response.stream);
        response.stream = nullptr;
        std::optional<std::string> all = co_await asio::co_spawn(
            *blocking,
            [&]() -> asio::awaitable<std::optional<std::string>> {
              std::string body;
              try {
                produce([&body](std::string_view c) {
                  body.append(c);
                  return true;
                });
              } catch (const std::exception& e) {
                spdlog::error("http: a streamed response failed: {}", e.what());
                co_return std::nullopt;
              } catch (...) {
                spdlog::error("http: a streamed response failed");
                co_return std::nullopt;
              }
              co_return body;
            },
            asio::use_awaitable);
        if (all) {
          response.body = std::move(*all);
        } else {
          response = error(500, "internal", "the response failed while it was produced");
          close_after = true;
        }
        --inflight;
      }
      // A 503 is temporary by definition (draining, storage unavailable, too many streams):
      // say when to try again, unless the route said it already.
      const bool says_when = std::any_of(response.headers.begin(), response.headers.end(),
                                         [](const auto& h) { return h.first == "Retry-After"; });
      // Not for provider_unavailable: a plugin or node this deployment does not run, which no
      // retry changes (clients asked again every 2 s for good).
      if (response.status == 503 && !says_when &&
          error_code_in(response.body) != error_code::kProviderUnavailable)
        response.headers.emplace_back("Retry-After", "2");
      // A 429 from any route (speech, a session's view, a tool) says when its bucket has a call
      // again: the policy's retry_after_ms in its details (only tool invokes said it).
      if (response.status == 429 && !says_when)
        response.headers.emplace_back("Retry-After", std::to_string(retry_after_s(response.body)));
      // A page of an allowed origin may read the answer (errors too: it shows their messages).
      if (const auto origin = cors_origin(req); !origin.empty()) {
        response.headers.emplace_back("Access-Control-Allow-Origin", origin);
        response.headers.emplace_back(
            "Access-Control-Expose-Headers",
            "X-Request-Id, WWW-Authenticate, Retry-After, Content-Disposition, ETag, "
            "X-Kiln-Voice, X-Kiln-Audio-Seconds, X-Kiln-FCs-Estimated, Link");
      }
      // With origins listed one by one, every answer depends on the Origin asked from (CORS
      // headers or none): a shared cache must not hand one origin's answer to another.
      if (cors_varies()) response.headers.emplace_back("Vary", "Origin");
      const bool keep_alive = head.keep_alive() && !close_after && !draining.load();
      const bool head_only = head.method() == bhttp::verb::head;
      const int status = response.status;
      auto bytes = head_only ? 0 : response.body.size();
      auto producer = response.stream;
      if (head_only && producer) {  // the headers of a streamed answer, nothing produced
        producer = nullptr;
        --inflight;
      }
      auto res =
          serialize(std::move(response), head.version(), keep_alive, req.request_id, head_only);
      if (match.route && (match.route->blocking || match.route->async_handler))
        conn.deadline = Clock::now() + o.request_timeout;
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(res), kTuple);
      (void)wn;
      if (producer) {
        if (!wec) {
          auto [sec, sent] = co_await stream_body(conn, std::move(producer));
          wec = sec;
          bytes = sent;
        }
        --inflight;
      }
      const auto took = Clock::now() - start;
      if (metrics)
        metrics->record(match.route              ? match.index
                        : !match.allowed.empty() ? metrics->other_method(match.index)
                                                 : metrics->unmatched(),
                        status, std::chrono::duration<double>(took).count());
      const bool probe =
          status < 400 && std::find(o.access_log_skip.begin(), o.access_log_skip.end(), req.path) !=
                              o.access_log_skip.end();
      if (access && !probe) {
        // Milliseconds with three decimals, from integer microseconds (no float formatting on
        // the per-request path).
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
        // Who asked: the API key and its tenant ("-" before authentication, or without a key).
        const std::string_view key = req.actor ? std::string_view(req.actor->name) : "-";
        const std::string_view tenant = req.tenant.empty() ? "-" : std::string_view(req.tenant);
        if (json_access)
          access->info(
              R"({{"method":{},"path":{},"status":{},"bytes":{},"ms":{}.{:03},"id":{},"key":{},"tenant":{}}})",
              json::serialize(json::string_view(req.method)),
              json::serialize(json::string_view(req.target)), status, bytes, us / 1000, us % 1000,
              json::serialize(json::string_view(req.request_id)),
              json::serialize(json::string_view(key.data(), key.size())),
              json::serialize(json::string_view(tenant.data(), tenant.size())));
        else
          access->info("http {} {} {} {}B {}.{:03}ms id={} key={} tenant={}", req.method,
                       req.target, status, bytes, us / 1000, us % 1000, req.request_id, key,
                       tenant);
      }
      if (draining.load()) {  // the drain waits for in-flight requests to reach zero
        std::lock_guard lock(stop_mu);
        stop_cv.notify_all();
      }
      if (wec || !keep_alive) break;
    }
    beast::error_code ignored;
    stream.shutdown(tcp::socket::shutdown_send, ignored);
    if (unread) {
      // Closing a socket with unread input resets the connection, and the client may lose the
      // answer it has not read yet: what it still sends is read and dropped for a while first.
      conn.deadline = Clock::now() + std::min<Clock::duration>(o.request_timeout, kLinger);
      std::array<char, 16384> scratch;
      for (std::size_t dropped = 0; dropped < kLingerBytes;) {
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(scratch), kTuple);
        if (ec) break;
        dropped += n;
      }
    }
  }
};

Server::Server(ServerOptions options, const Router& router, Authenticator auth,
               std::shared_ptr<HttpMetrics> metrics)
    : impl_(std::make_unique<Impl>(std::move(options), router, std::move(auth),
                                   std::move(metrics))) {}

Server::~Server() {
  drain_and_stop();
}

std::uint16_t Server::start() {
  auto& i = *impl_;
  if (i.o.threads <= 0)
    i.o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  boost::system::error_code ec;
  auto address = asio::ip::make_address(i.o.host, ec);
  if (ec)
    throw std::runtime_error("server.host '" + i.o.host + "' is not an IP address (" +
                             ec.message() + "); use e.g. 127.0.0.1 or 0.0.0.0");
  tcp::endpoint ep(address, static_cast<std::uint16_t>(i.o.port));
  // Every connection is a descriptor: the soft limit (often 1024) is raised to the hard one, and
  // a cap the process still cannot hold is said now rather than as failed accepts later.
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    const rlim_t want = static_cast<rlim_t>(i.o.max_connections) + kSpareFiles;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = std::min(want, rl.rlim_max);
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
      spdlog::warn(
          "http: server.max_connections is {} but this process may open only {} files ({} are "
          "kept for the database, logs and plugins); lower server.max_connections or raise the "
          "limit (systemd: LimitNOFILE=)",
          i.o.max_connections, rl.rlim_cur, kSpareFiles);
  }
  for (int t = 0; t < i.o.threads; ++t) {
    i.contexts.push_back(std::make_unique<asio::io_context>(1));
    i.context_conns.push_back(std::make_unique<Impl::ContextConns>());
  }
  i.acceptor.emplace(*i.contexts.front());
  i.acceptor->open(ep.protocol(), ec);
  if (!ec) i.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) i.acceptor->bind(ep, ec);
  if (!ec) i.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    // What to do depends on why: a port in use, an address this host does not have, a port
    // below 1024 without the privilege.
    const std::string hint = ec == asio::error::address_in_use
                                 ? "is another server using it? set server.port, or 0 for any"
                             : ec == boost::system::errc::address_not_available
                                 ? "this host has no address " + i.o.host +
                                       " (server.host); use 127.0.0.1, 0.0.0.0 "
                                       "or one of its own addresses"
                             : ec == boost::system::errc::permission_denied
                                 ? "ports below 1024 need privileges; use a higher server.port"
                                 : "set server.host and server.port";
    throw std::runtime_error("cannot listen on " + i.o.host + ":" + std::to_string(i.o.port) +
                             ": " + ec.message() + " (" + hint + ")");
  }
  const auto port = i.acceptor->local_endpoint().port();
  asio::co_spawn(*i.contexts.front(), i.accept_loop(), asio::detached);
  for (std::size_t c = 0; c < i.contexts.size(); ++c) {
    asio::co_spawn(*i.contexts[c], i.sweep(c), asio::detached);
    i.threads.emplace_back([ctx = i.contexts[c].get()] { ctx->run(); });
  }
  return port;
}

std::int64_t Server::in_flight() const {
  return impl_->inflight.load();
}

void Server::drain_and_stop() {
  auto& i = *impl_;
  {
    std::unique_lock lock(i.stop_mu);
    if (i.stopped) return;
    i.stopped = true;
    i.draining = true;
    const auto deadline = Clock::now() + i.o.drain_timeout;
    i.stop_cv.wait_until(lock, deadline, [&] { return i.inflight.load() == 0; });
    if (i.inflight.load() > 0)
      spdlog::warn("http: {} request(s) still running after server.drain_timeout_ms; stopping",
                   i.inflight.load());
  }
  if (!i.contexts.empty())
    asio::post(*i.contexts.front(), [&i] {
      boost::system::error_code ignored;
      if (i.acceptor) i.acceptor->close(ignored);
    });
  // Each thread writes its last access-log lines, then stops.
  for (auto& ctx : i.contexts)
    asio::post(*ctx, [&i, c = ctx.get()] {
      if (i.access) i.access->flush();
      c->stop();
    });
  for (auto& t : i.threads)
    if (t.joinable()) t.join();
  i.blocking->stop();
  i.blocking->join();
}

}  // namespace kiln::http
