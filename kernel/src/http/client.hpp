// A small blocking HTTP/1.1 client over Beast, for `kiln --server URL` and tests. One
// connection, kept alive between requests and reopened when the server closed it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kiln::http {

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const;
};

class Client {
 public:
  // `base`: http://host:port (no TLS). Throws std::invalid_argument for another form.
  explicit Client(const std::string& base,
                  std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~Client();
  // Throws std::runtime_error naming the server when it cannot connect or the exchange fails;
  // each step (connect, send, answer) that takes longer than the timeout fails ("no answer
  // within N s").
  ClientResponse request(const std::string& method, const std::string& target,
                         const std::string& body = "",
                         std::vector<std::pair<std::string, std::string>> headers = {});
  const std::string& host() const { return host_; }  // an IPv6 address without its brackets
  const std::string& port() const { return port_; }
  // HOST:PORT as a URL and the Host header write it ([::1]:8080 for IPv6).
  std::string authority() const;

 private:
  std::string no_answer() const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string host_, port_;
  std::chrono::milliseconds timeout_;
};

}  // namespace kiln::http
