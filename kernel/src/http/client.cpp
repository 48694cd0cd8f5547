#include "http/client.hpp"

#include <cstdio>
#include <optional>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "kiln/abi.hpp"

namespace kiln::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

std::string ClientResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

struct Client::Impl {
  asio::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  // Runs one asynchronous operation to its end: tcp_stream's deadline (expires_after) applies to
  // asynchronous operations only, so a server that accepts and never answers ends in
  // beast::error::timeout instead of a read blocked for ever.
  template <class Start>
  beast::error_code run(Start start) {
    beast::error_code ec;
    start([&ec](beast::error_code e, auto&&...) { ec = e; });
    ioc.restart();
    ioc.run();
    return ec;
  }
};

Client::Client(const std::string& base, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()), timeout_(timeout) {
  const std::string scheme = "http://";
  if (base.rfind(scheme, 0) != 0)
    throw std::invalid_argument("server URL '" + base +
                                "' must look like http://HOST:PORT (https is not supported)");
  std::string rest = base.substr(scheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos)
    throw std::invalid_argument("server URL '" + base + "' must not have a path");
  if (!rest.empty() && rest.front() == '[') {  // http://[::1]:8080 (RFC 3986 §3.2.2)
    const auto close = rest.find(']');
    if (close == std::string::npos || (close + 1 < rest.size() && rest[close + 1] != ':'))
      throw std::invalid_argument("server URL '" + base +
                                  "' has an IPv6 address: write it as http://[ADDRESS]:PORT");
    host_ = rest.substr(1, close - 1);
    port_ = close + 1 == rest.size() ? "80" : rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    host_ = colon == std::string::npos ? rest : rest.substr(0, colon);
    port_ = colon == std::string::npos ? "80" : rest.substr(colon + 1);
  }
  if (host_.empty() || port_.empty())
    throw std::invalid_argument("server URL '" + base + "' needs a host and a port");
}

Client::~Client() = default;

std::string Client::authority() const {
  return (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" + port_;
}

std::string Client::no_answer() const {
  char buf[96];
  std::snprintf(buf, sizeof buf, "no answer within %.3g s", timeout_.count() / 1000.0);
  return buf;
}

ClientResponse Client::request(const std::string& method, const std::string& target,
                               const std::string& body,
                               std::vector<std::pair<std::string, std::string>> headers) {
  auto& i = *impl_;
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, authority());
  req.set(bhttp::field::user_agent, std::string("kiln/") + kVersion);
  for (auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() && req.find(bhttp::field::content_type) == req.end())
    req.set(bhttp::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  req.keep_alive(true);
  for (int attempt = 0;; ++attempt) {
    beast::error_code ec;
    if (!i.stream) {
      tcp::resolver resolver(i.ioc);
      auto results = resolver.resolve(host_, port_, ec);
      if (ec) throw std::runtime_error("cannot resolve " + authority() + ": " + ec.message());
      i.stream.emplace(i.ioc);
      i.stream->expires_after(timeout_);
      ec = i.run([&](auto done) { i.stream->async_connect(results, done); });
      if (ec) {
        i.stream.reset();
        throw std::runtime_error("cannot connect to http://" + authority() + ": " +
                                 (ec == beast::error::timeout ? no_answer() : ec.message()) +
                                 " (is `kiln serve` running there?)");
      }
      i.buffer.clear();
    }
    i.stream->expires_after(timeout_);
    ec = i.run([&](auto done) { bhttp::async_write(*i.stream, req, done); });
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.skip(req.method() == bhttp::verb::head);  // headers only, whatever Content-Length says
    if (!ec) {
      i.stream->expires_after(timeout_);
      ec = i.run([&](auto done) { bhttp::async_read(*i.stream, i.buffer, parser, done); });
    }
    if (ec) {
      i.stream.reset();
      // A kept-alive connection the server closed meanwhile: one fresh try.
      if (attempt == 0 && (ec == bhttp::error::end_of_stream ||
                           ec == asio::error::connection_reset || ec == asio::error::broken_pipe))
        continue;
      throw std::runtime_error("HTTP " + method + " http://" + authority() + target + " failed: " +
                               (ec == beast::error::timeout ? no_answer() : ec.message()));
    }
    auto& res = parser.get();
    ClientResponse out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(f.value());
    }
    out.body = std::move(res.body());
    if (!res.keep_alive()) i.stream.reset();
    return out;
  }
}

}  // namespace kiln::http
