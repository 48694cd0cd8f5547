#include "protocol.hpp"

#include <cstring>

namespace kiln::r1 {

namespace {

template <class T>
T get_le(const std::vector<unsigned char>& b, std::size_t at) {
  T v;
  unsigned char tmp[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i) tmp[i] = b[at + i];  // x86/ARM: little-endian
  std::memcpy(&v, tmp, sizeof(T));
  return v;
}

template <class T>
void put_le(std::vector<unsigned char>& b, std::size_t at, T v) {
  unsigned char tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  for (std::size_t i = 0; i < sizeof(T); ++i) b[at + i] = tmp[i];
}

constexpr std::uint32_t kCanary = 0xAAFFFFFF;

}  // namespace

const CommandSpec& spec(ReadCommand c) {
  static const CommandSpec info1{{0x30, 0x02}, 32, "info 1"};
  static const CommandSpec info2{{0x89, 0x01}, 36, "info 2"};
  static const CommandSpec poll1{{0x30, 0x01}, 64, "poll 1"};
  static const CommandSpec poll2{{0x30, 0x03}, 64, "poll 2"};
  switch (c) {
    case ReadCommand::kInfo1:
      return info1;
    case ReadCommand::kInfo2:
      return info2;
    case ReadCommand::kPoll1:
      return poll1;
    case ReadCommand::kPoll2:
      break;
  }
  return poll2;
}

std::optional<ReadCommand> read_command_of(const std::vector<unsigned char>& bytes) {
  for (auto c :
       {ReadCommand::kInfo1, ReadCommand::kInfo2, ReadCommand::kPoll1, ReadCommand::kPoll2})
    if (bytes.size() == 2 && bytes[0] == spec(c).bytes[0] && bytes[1] == spec(c).bytes[1]) return c;
  return std::nullopt;
}

std::optional<Frame1> decode_frame1(const std::vector<unsigned char>& b, std::string* why) {
  if (b.size() != 64) {
    *why = "frame 1 has " + std::to_string(b.size()) + " bytes, not 64";
    return std::nullopt;
  }
  if (b[41] != 10) {
    *why = "frame 1 byte 41 is " + std::to_string(b[41]) + ", not 10";
    return std::nullopt;
  }
  if (get_le<std::uint32_t>(b, 60) != kCanary) {
    *why = "frame 1 canary at 60 is not 0xAAFFFFFF";
    return std::nullopt;
  }
  Frame1 f;
  f.bt = get_le<float>(b, 0);
  f.bt_ror = get_le<float>(b, 4);
  f.drum_temp = get_le<float>(b, 8);
  f.exhaust = get_le<float>(b, 16);
  f.minutes = b[24];
  f.seconds = b[25];
  f.fan = b[26];
  f.heater = b[27];
  f.drum = b[28];
  f.state = b[29];
  f.ir = get_le<float>(b, 32);
  f.pcb = get_le<float>(b, 36);
  f.fan_rpm = get_le<std::int16_t>(b, 44);
  f.voltage = get_le<std::int16_t>(b, 48);
  f.coil_fan = get_le<std::int32_t>(b, 52);
  return f;
}

std::optional<Frame2> decode_frame2(const std::vector<unsigned char>& b, std::string* why) {
  if (b.size() != 64) {
    *why = "frame 2 has " + std::to_string(b.size()) + " bytes, not 64";
    return std::nullopt;
  }
  Frame2 f;
  f.coil_fan2 = get_le<std::int32_t>(b, 32);
  f.preheat_temp = get_le<std::uint16_t>(b, 40);
  f.state = b[42];
  return f;
}

std::optional<Info> decode_info(const std::vector<unsigned char>& a,
                                const std::vector<unsigned char>& b, std::string* why) {
  if (a.size() != 32 || b.size() != 36) {
    *why = "info replies have " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
           " bytes, not 32 and 36";
    return std::nullopt;
  }
  Info i;
  i.serial = get_le<std::int16_t>(a, 0);
  i.firmware = get_le<std::int16_t>(a, 24);
  i.roasts = (static_cast<std::uint32_t>(b[27]) << 24) | (static_cast<std::uint32_t>(b[28]) << 16) |
             (static_cast<std::uint32_t>(b[29]) << 8) | static_cast<std::uint32_t>(b[30]);
  return i;
}

std::vector<unsigned char> encode_frame1(const Frame1& f) {
  std::vector<unsigned char> b(64, 0);
  put_le(b, 0, f.bt);
  put_le(b, 4, f.bt_ror);
  put_le(b, 8, f.drum_temp);
  put_le(b, 16, f.exhaust);
  b[24] = f.minutes;
  b[25] = f.seconds;
  b[26] = f.fan;
  b[27] = f.heater;
  b[28] = f.drum;
  b[29] = f.state;
  put_le(b, 32, f.ir);
  put_le(b, 36, f.pcb);
  b[41] = 10;
  put_le(b, 44, f.fan_rpm);
  put_le(b, 48, f.voltage);
  put_le(b, 52, f.coil_fan);
  put_le(b, 60, kCanary);
  return b;
}

std::vector<unsigned char> encode_frame2(const Frame2& f) {
  std::vector<unsigned char> b(64, 0);
  put_le(b, 32, f.coil_fan2);
  put_le(b, 40, f.preheat_temp);
  b[42] = f.state;
  return b;
}

std::vector<unsigned char> encode_info1(int serial, int firmware) {
  std::vector<unsigned char> b(32, 0);
  put_le(b, 0, static_cast<std::int16_t>(serial));
  put_le(b, 24, static_cast<std::int16_t>(firmware));
  return b;
}

std::vector<unsigned char> encode_info2(std::uint32_t roasts) {
  std::vector<unsigned char> b(36, 0);
  b[27] = static_cast<unsigned char>(roasts >> 24);
  b[28] = static_cast<unsigned char>(roasts >> 16);
  b[29] = static_cast<unsigned char>(roasts >> 8);
  b[30] = static_cast<unsigned char>(roasts);
  return b;
}

std::string to_hex(const std::vector<unsigned char>& bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (auto c : bytes) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::optional<std::vector<unsigned char>> from_hex(const std::string& hex) {
  if (hex.size() % 2) return std::nullopt;
  std::vector<unsigned char> out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    auto n = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = n(hex[i]), lo = n(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace kiln::r1
