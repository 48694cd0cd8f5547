// The Aillio Bullet R1's USB protocol, read side only (DOMAIN §1): the four request commands a
// read-only driver may send, the frames it gets back, both validity checks, and an encoder of
// frames (for the replay transport and tests). The write commands (heater, fan, drum, PRS)
// are not representable here: a transport takes a ReadCommand, never bytes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kiln::r1 {

inline constexpr std::uint16_t kVendor = 0x0483;
inline constexpr std::uint16_t kProduct = 0x5741;      // most boards
inline constexpr std::uint16_t kProductRev3 = 0xa27e;  // rev3 boards
inline constexpr int kInterface = 1;
inline constexpr int kConfiguration = 1;
inline constexpr unsigned char kEndpointOut = 0x03;
inline constexpr unsigned char kEndpointIn = 0x81;

// Every command this driver can send. There is deliberately no way to build another.
enum class ReadCommand { kInfo1, kInfo2, kPoll1, kPoll2 };

struct CommandSpec {
  std::array<unsigned char, 2> bytes;
  std::size_t reply_size;
  const char* name;
};
const CommandSpec& spec(ReadCommand c);
// The command a two-byte request is, if it is one of the read commands (replay files, tests).
std::optional<ReadCommand> read_command_of(const std::vector<unsigned char>& bytes);

// Frame 1 (poll, 64 bytes, little-endian): see DOMAIN §1.
struct Frame1 {
  float bt = 0, bt_ror = 0, drum_temp = 0, exhaust = 0;
  std::uint8_t minutes = 0, seconds = 0, fan = 0, heater = 0, drum = 0, state = 0;
  float ir = 0, pcb = 0;
  std::int16_t fan_rpm = 0, voltage = 0;
  std::int32_t coil_fan = 0;
};
// Frame 2 (poll, 64 bytes).
struct Frame2 {
  std::int32_t coil_fan2 = 0;
  std::uint16_t preheat_temp = 0;
  std::uint8_t state = 0;  // byte 42: one driver reads the state here; recorded, not used
};
struct Info {
  int serial = 0, firmware = 0;
  std::uint32_t roasts = 0;
};

// Decoding refuses a frame of the wrong size or failing a validity check (Artisan's: byte 41 is
// 10; the other driver's: the canary uint32 at 60 is 0xAAFFFFFF), with the reason in `why`.
std::optional<Frame1> decode_frame1(const std::vector<unsigned char>& f, std::string* why);
std::optional<Frame2> decode_frame2(const std::vector<unsigned char>& f, std::string* why);
std::optional<Info> decode_info(const std::vector<unsigned char>& info1,
                                const std::vector<unsigned char>& info2, std::string* why);

std::vector<unsigned char> encode_frame1(const Frame1& f);
std::vector<unsigned char> encode_frame2(const Frame2& f);
std::vector<unsigned char> encode_info1(int serial, int firmware);
std::vector<unsigned char> encode_info2(std::uint32_t roasts);

std::string to_hex(const std::vector<unsigned char>& bytes);
std::optional<std::vector<unsigned char>> from_hex(const std::string& hex);

}  // namespace kiln::r1
