#include "transport.hpp"

#include <libusb.h>

#include <cmath>
#include <functional>
#include <sstream>

#include "kiln/nodes/telemetry_driver.hpp"
#include "model.hpp"

namespace kiln::r1 {

namespace {

const char* kUdevHint =
    "add a udev rule, e.g. /etc/udev/rules.d/99-aillio-r1.rules with\n"
    "  SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"0483\", ATTRS{idProduct}==\"5741\", MODE=\"0660\", "
    "GROUP=\"plugdev\"\n"
    "  (and the same for idProduct a27e on rev3 boards), then `udevadm control --reload-rules && "
    "udevadm trigger`, replug the roaster and add yourself to plugdev";

// A device's port path as Linux names it: "BUS-PORT[.PORT...]".
std::string port_path(libusb_device* d) {
  std::uint8_t ports[8];
  const int n = libusb_get_port_numbers(d, ports, sizeof ports);
  std::string out = std::to_string(libusb_get_bus_number(d));
  for (int i = 0; i < n; ++i) out += (i == 0 ? "-" : ".") + std::to_string(ports[i]);
  return out;
}

class UsbTransport final : public Transport {
 public:
  explicit UsbTransport(const std::string& port) {
    if (int rc = libusb_init(&ctx_); rc != 0)
      throw TransportError("device_not_found",
                           std::string("libusb could not start: ") + libusb_error_name(rc), false);
    libusb_device** list = nullptr;
    const ssize_t n = libusb_get_device_list(ctx_, &list);
    std::vector<libusb_device*> r1s;
    std::vector<std::string> ports;
    for (ssize_t i = 0; i < n; ++i) {
      libusb_device_descriptor d{};
      if (libusb_get_device_descriptor(list[i], &d) == 0 && d.idVendor == kVendor &&
          (d.idProduct == kProduct || d.idProduct == kProductRev3)) {
        r1s.push_back(list[i]);
        ports.push_back(port_path(list[i]));
      }
    }
    std::size_t which = 0;
    try {
      which = choose_usb(ports, port);
    } catch (const TransportError&) {
      if (list) libusb_free_device_list(list, 1);
      cleanup();
      throw;
    }
    int rc = libusb_open(r1s[which], &h_);
    if (list) libusb_free_device_list(list, 1);
    if (rc == LIBUSB_ERROR_NOT_FOUND) {
      cleanup();
      throw TransportError("device_not_found",
                           "the Aillio Bullet R1 at USB port " + ports[which] +
                               " went away while it was opened: is it plugged in and switched "
                               "on? (`lsusb` lists it)",
                           false);
    }
    if (rc == LIBUSB_ERROR_ACCESS) {
      cleanup();
      throw TransportError("no_permission",
                           std::string("no permission to open the Bullet R1: ") + kUdevHint, false);
    }
    if (rc != 0) {
      cleanup();
      throw TransportError(
          "device_busy", std::string("the Bullet R1 could not be opened: ") + libusb_error_name(rc),
          false);
    }
    if (libusb_kernel_driver_active(h_, kInterface) == 1) {
      if (int d = libusb_detach_kernel_driver(h_, kInterface); d != 0) {
        cleanup();
        throw TransportError("device_busy",
                             std::string("a kernel driver holds the Bullet R1's interface and "
                                         "could not be detached: ") +
                                 libusb_error_name(d),
                             false);
      }
    }
    libusb_set_configuration(h_, kConfiguration);  // BUSY when already configured: fine
    if (int c = libusb_claim_interface(h_, kInterface); c != 0) {
      cleanup();
      throw TransportError(c == LIBUSB_ERROR_BUSY ? "device_busy" : "disconnected",
                           c == LIBUSB_ERROR_BUSY
                               ? "another program holds the Bullet R1 (Artisan? close it)"
                               : std::string("cannot claim the Bullet R1: ") + libusb_error_name(c),
                           false);
    }
  }
  ~UsbTransport() override { cleanup(); }

  std::vector<unsigned char> exchange(ReadCommand command) override {
    const auto& s = spec(command);
    unsigned char out[2] = {s.bytes[0], s.bytes[1]};
    int n = 0;
    if (int rc = libusb_bulk_transfer(h_, kEndpointOut, out, 2, &n, 1000); rc != 0 || n != 2)
      fail(rc, "sending", s.name);
    std::vector<unsigned char> reply(s.reply_size);
    if (int rc = libusb_bulk_transfer(h_, kEndpointIn, reply.data(), static_cast<int>(reply.size()),
                                      &n, 1000);
        rc != 0)
      fail(rc, "reading", s.name);
    reply.resize(static_cast<std::size_t>(n));
    return reply;
  }
  bool live() const override { return true; }

 private:
  [[noreturn]] void fail(int rc, const char* what, const char* name) {
    throw TransportError("disconnected",
                         std::string("USB error ") + what + " " + name + ": " +
                             libusb_error_name(rc) + " (unplugged? reconnecting)",
                         true);
  }
  void cleanup() {
    if (h_) {
      libusb_release_interface(h_, kInterface);
      libusb_close(h_);
      h_ = nullptr;
    }
    if (ctx_) {
      libusb_exit(ctx_);
      ctx_ = nullptr;
    }
  }
  libusb_context* ctx_ = nullptr;
  libusb_device_handle* h_ = nullptr;
};

class RecordingTransport final : public Transport {
 public:
  RecordingTransport(std::unique_ptr<Transport> inner, const std::filesystem::path& file)
      : inner_(std::move(inner)), writer_(file) {}
  std::vector<unsigned char> exchange(ReadCommand command) override {
    auto reply = inner_->exchange(command);
    writer_.write(command, reply);
    return reply;
  }
  bool live() const override { return inner_->live(); }

 private:
  std::unique_ptr<Transport> inner_;
  ReplayWriter writer_;
};

class ReplayTransport final : public Transport {
 public:
  explicit ReplayTransport(const std::filesystem::path& file) : file_(file), in_(file) {
    if (!in_)
      throw TransportError("device_not_found", "cannot read the replay file " + file.string(),
                           false);
  }
  std::vector<unsigned char> exchange(ReadCommand command) override {
    std::string line;
    while (std::getline(in_, line)) {
      ++line_no_;
      if (line.empty() || line[0] == '#') continue;
      std::istringstream words(line);
      std::string req, rep;
      words >> req >> rep;
      auto rq = from_hex(req);
      auto rp = from_hex(rep);
      if (!rq || !rp)
        throw TransportError("bad_frame",
                             file_.string() + ":" + std::to_string(line_no_) +
                                 ": not two hex fields (REQUEST REPLY)",
                             true);
      auto cmd = read_command_of(*rq);
      if (!cmd || *cmd != command)
        throw TransportError("bad_frame",
                             file_.string() + ":" + std::to_string(line_no_) + ": the file has " +
                                 req + " where the driver asks " +
                                 to_hex({spec(command).bytes[0], spec(command).bytes[1]}),
                             true);
      return *rp;
    }
    throw TransportError("ended", "the replay " + file_.string() + " is over", false);
  }
  bool live() const override { return false; }

 private:
  std::filesystem::path file_;
  std::ifstream in_;
  int line_no_ = 0;
};

// Readings from a source (the simulated roaster, a gate's readings file) encoded into R1
// frames, so the driver reads them through its own decoder.
class EncodingTransport final : public Transport {
 public:
  using Source = std::function<std::optional<telemetry::Sample>()>;
  EncodingTransport(Source next, std::string what)
      : next_(std::move(next)), what_(std::move(what)) {}
  std::vector<unsigned char> exchange(ReadCommand command) override {
    switch (command) {
      case ReadCommand::kInfo1:
        return encode_info1(4242, 12);
      case ReadCommand::kInfo2:
        return encode_info2(7);
      case ReadCommand::kPoll1: {
        const auto s = next_();
        if (!s) throw TransportError("ended", what_ + " is over", false);
        Frame1 f;
        f.bt = static_cast<float>(s->bt);
        f.bt_ror = static_cast<float>(s->ror);
        f.drum_temp = static_cast<float>(s->et);
        f.exhaust = static_cast<float>(s->et);
        const auto secs = static_cast<long long>(std::floor(s->t));
        f.minutes = static_cast<std::uint8_t>((secs / 60) % 256);
        f.seconds = static_cast<std::uint8_t>(secs % 60);
        f.fan = static_cast<std::uint8_t>(s->fan);
        f.heater = static_cast<std::uint8_t>(s->heater);
        f.drum = static_cast<std::uint8_t>(s->drum);
        f.state = static_cast<std::uint8_t>(s->state);
        last_state_ = f.state;
        return encode_frame1(f);
      }
      case ReadCommand::kPoll2: {
        Frame2 f;
        f.state = last_state_;
        return encode_frame2(f);
      }
    }
    throw TransportError("bad_frame", "unknown command", false);
  }
  bool live() const override { return false; }

 private:
  Source next_;
  std::string what_;
  std::uint8_t last_state_ = 0;
};

}  // namespace

ReplayWriter::ReplayWriter(const std::filesystem::path& file) : out_(file, std::ios::app) {
  if (!out_) throw TransportError("device_busy", "cannot write " + file.string(), false);
  out_ << "# kiln Bullet R1 replay v1: REQUEST_HEX REPLY_HEX per exchange\n";
}

void ReplayWriter::write(ReadCommand c, const std::vector<unsigned char>& reply) {
  out_ << to_hex({spec(c).bytes[0], spec(c).bytes[1]}) << " " << to_hex(reply) << "\n";
  out_.flush();
}

std::size_t choose_usb(const std::vector<std::string>& ports, const std::string& wanted) {
  std::string found;
  for (const auto& p : ports) found += (found.empty() ? "" : ", ") + p;
  if (ports.empty())
    throw TransportError("device_not_found",
                         "no Aillio Bullet R1 on USB (vendor 0483, product 5741 or a27e): is it "
                         "plugged in and switched on? (`lsusb` lists it)",
                         false);
  if (!wanted.empty()) {
    for (std::size_t i = 0; i < ports.size(); ++i)
      if (ports[i] == wanted) return i;
    throw TransportError("device_not_found",
                         "no Aillio Bullet R1 at USB port " + wanted + " (usb_port); found at " +
                             found + " (`lsusb -t` shows the ports)",
                         false);
  }
  if (ports.size() > 1)
    throw TransportError("device_not_found",
                         std::to_string(ports.size()) + " Aillio Bullet R1s on USB (ports " +
                             found +
                             "): set plugin_config.telemetry_bullet_r1.usb_port to the one this "
                             "recorder reads (a recorder per roaster)",
                         false);
  return 0;
}

std::unique_ptr<Transport> open_usb(const std::string& port) {
  return std::make_unique<UsbTransport>(port);
}

std::unique_ptr<Transport> recording(std::unique_ptr<Transport> inner,
                                     const std::filesystem::path& file) {
  return std::make_unique<RecordingTransport>(std::move(inner), file);
}

std::unique_ptr<Transport> open_replay(const std::filesystem::path& file) {
  return std::make_unique<ReplayTransport>(file);
}

std::unique_ptr<Transport> open_sim(double interval_s, double mass_g, std::uint64_t seed) {
  sim::Options o;
  o.interval_s = interval_s;
  o.mass_g = mass_g;
  o.seed = seed;
  auto roaster = std::make_shared<sim::Roaster>(o);
  return std::make_unique<EncodingTransport>(
      [roaster]() -> std::optional<telemetry::Sample> { return roaster->next(); },
      "the simulated roast");
}

std::unique_ptr<Transport> open_readings(const std::filesystem::path& file) {
  std::shared_ptr<const std::vector<telemetry::Sample>> readings;
  try {
    readings =
        std::make_shared<const std::vector<telemetry::Sample>>(nodes::read_gate_readings(file));
  } catch (const std::exception& e) {
    throw TransportError("device_not_found", e.what(), false);
  }
  auto next = std::make_shared<std::size_t>(0);
  return std::make_unique<EncodingTransport>(
      [readings, next]() -> std::optional<telemetry::Sample> {
        if (*next >= readings->size()) return std::nullopt;
        return (*readings)[(*next)++];
      },
      "the readings of " + file.string());
}

}  // namespace kiln::r1
