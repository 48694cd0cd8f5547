// The Bullet R1 protocol and transports: frames encode and decode, both validity checks refuse
// bad frames, only the four read commands exist, replay files round-trip, and without a roaster
// the USB transport says so.
#define BOOST_TEST_MODULE telemetry_bullet_r1
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "kiln/nodes/telemetry_driver.hpp"
#include "protocol.hpp"
#include "support/process.hpp"
#include "transport.hpp"

using namespace kiln;

BOOST_AUTO_TEST_CASE(frames_round_trip) {
  r1::Frame1 f;
  f.bt = 187.25f;
  f.bt_ror = 9.5f;
  f.drum_temp = 201.5f;
  f.exhaust = 150.0f;
  f.minutes = 7;
  f.seconds = 42;
  f.fan = 4;
  f.heater = 6;
  f.drum = 9;
  f.state = 6;
  f.fan_rpm = 1234;
  f.coil_fan = 99;
  std::string why;
  auto d = r1::decode_frame1(r1::encode_frame1(f), &why);
  BOOST_REQUIRE_MESSAGE(d, why);
  BOOST_TEST(d->bt == 187.25f);
  BOOST_TEST(d->drum_temp == 201.5f);
  BOOST_TEST(d->state == 6);
  BOOST_TEST(d->seconds == 42);
  BOOST_TEST(d->fan_rpm == 1234);
  auto info = r1::decode_info(r1::encode_info1(2048, 31), r1::encode_info2(512), &why);
  BOOST_REQUIRE(info);
  BOOST_TEST(info->serial == 2048);
  BOOST_TEST(info->firmware == 31);
  BOOST_TEST(info->roasts == 512u);
}

// "0a1b..." as bytes (this test links the protocol alone, not the kernel's decoder).
static std::vector<unsigned char> from_hex(std::string_view hex) {
  std::vector<unsigned char> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(
        static_cast<unsigned char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// The frames as the roaster sends them, written out byte by byte from DOMAIN §1's layout (not by
// the encoder): every field at its offset, each with its own value, so a field read from the
// wrong place or with the wrong width shows. The encoder writes the same bytes back.
BOOST_AUTO_TEST_CASE(frames_decode_as_the_roaster_lays_them_out) {
  // BT 187.25 @0, RoR 9.5 @4, drum 201.5 @8, exhaust 150.75 @16, 7:42 @24-25, fan 4, heater 6,
  // drum 9, state 6 (ROASTING) @26-29, IR 175.5 @32, PCB 38.25 @36, byte 41 = 10, fan RPM 1234
  // @44, voltage 231 @48, coil fan 99 @52, canary 0xAAFFFFFF @60 (all little-endian).
  const auto frame1 = from_hex(
      "00403b4300001841008049430000000000c0164300000000072a04060906000000802f4300001942000a0000d20"
      "40000e70000006300000000000000ffffffaa");
  BOOST_REQUIRE(frame1.size() == 64u);
  std::string why;
  const auto f = r1::decode_frame1(frame1, &why);
  BOOST_REQUIRE_MESSAGE(f, why);
  BOOST_TEST(f->bt == 187.25f);
  BOOST_TEST(f->bt_ror == 9.5f);
  BOOST_TEST(f->drum_temp == 201.5f);
  BOOST_TEST(f->exhaust == 150.75f);
  BOOST_TEST(f->minutes == 7);
  BOOST_TEST(f->seconds == 42);
  BOOST_TEST(f->fan == 4);
  BOOST_TEST(f->heater == 6);
  BOOST_TEST(f->drum == 9);
  BOOST_TEST(f->state == 6);
  BOOST_TEST(f->ir == 175.5f);
  BOOST_TEST(f->pcb == 38.25f);
  BOOST_TEST(f->fan_rpm == 1234);
  BOOST_TEST(f->voltage == 231);
  BOOST_TEST(f->coil_fan == 99);
  BOOST_TEST((r1::encode_frame1(*f) == frame1));
  // Frame 2: coil fan 2 77 @32, preheat 245 @40 (u16), state 4 (CHARGE) @42.
  const auto frame2 = from_hex(
      "00000000000000000000000000000000000000000000000000000000000000004d00000000000000f50004000000"
      "000000000000000000000000000000000000");
  BOOST_REQUIRE(frame2.size() == 64u);
  const auto g = r1::decode_frame2(frame2, &why);
  BOOST_REQUIRE_MESSAGE(g, why);
  BOOST_TEST(g->coil_fan2 == 77);
  BOOST_TEST(g->preheat_temp == 245);
  BOOST_TEST(g->state == 4);
  BOOST_TEST((r1::encode_frame2(*g) == frame2));
  // Info: serial 2048 @0 and firmware 31 @24 (int16), roast count 512 @27 (big-endian u32).
  const auto info1 = from_hex("0008000000000000000000000000000000000000000000001f00000000000000");
  const auto info2 =
      from_hex("000000000000000000000000000000000000000000000000000000000002000000000000");
  const auto info = r1::decode_info(info1, info2, &why);
  BOOST_REQUIRE_MESSAGE(info, why);
  BOOST_TEST(info->serial == 2048);
  BOOST_TEST(info->firmware == 31);
  BOOST_TEST(info->roasts == 512u);
  BOOST_TEST((r1::encode_info1(2048, 31) == info1));
  BOOST_TEST((r1::encode_info2(512) == info2));
}

BOOST_AUTO_TEST_CASE(both_validity_checks_refuse_bad_frames) {
  auto good = r1::encode_frame1(r1::Frame1{});
  std::string why;
  auto bad41 = good;
  bad41[41] = 9;
  BOOST_TEST(!r1::decode_frame1(bad41, &why));
  BOOST_TEST(why.find("byte 41") != std::string::npos, why);
  auto bad_canary = good;
  bad_canary[61] = 0;
  BOOST_TEST(!r1::decode_frame1(bad_canary, &why));
  BOOST_TEST(why.find("canary") != std::string::npos, why);
  auto truncated = good;
  truncated.resize(40);
  BOOST_TEST(!r1::decode_frame1(truncated, &why));
  BOOST_TEST(why.find("40 bytes") != std::string::npos, why);
  // Garbage: never accepted.
  std::mt19937 rng(7);
  int accepted = 0;
  for (int i = 0; i < 2000; ++i) {
    std::vector<unsigned char> junk(64);
    for (auto& b : junk) b = static_cast<unsigned char>(rng());
    accepted += r1::decode_frame1(junk, &why).has_value();
  }
  BOOST_TEST(accepted == 0);
}

BOOST_AUTO_TEST_CASE(only_read_commands_can_be_sent) {
  // A transport takes a ReadCommand, never bytes: a write command cannot be expressed.
  static_assert(!std::is_invocable_v<decltype(&r1::Transport::exchange), r1::Transport&,
                                     std::vector<unsigned char>>);
  static_assert(!std::is_invocable_v<decltype(&r1::Transport::exchange), r1::Transport&, int>);
  std::set<std::string> sent;
  for (auto c : {r1::ReadCommand::kInfo1, r1::ReadCommand::kInfo2, r1::ReadCommand::kPoll1,
                 r1::ReadCommand::kPoll2})
    sent.insert(r1::to_hex({r1::spec(c).bytes[0], r1::spec(c).bytes[1]}));
  BOOST_TEST((sent == std::set<std::string>{"3002", "8901", "3001", "3003"}));
  // Requests that are not read commands are not recognised (e.g. in a replay file).
  BOOST_TEST(!r1::read_command_of({0x30, 0x04}));
  BOOST_TEST(!r1::read_command_of({0x35, 0x01}));
}

BOOST_AUTO_TEST_CASE(a_replay_file_reads_back_what_was_recorded) {
  test::TempDir dir;
  const auto file = dir.path() / "roast.r1replay";
  std::vector<std::vector<unsigned char>> frames;
  {
    // record_raw: any transport's exchanges, as they happen (here the simulated roaster's).
    auto sim = r1::recording(r1::open_sim(1.0, 500, 3), file);
    for (auto c : {r1::ReadCommand::kInfo1, r1::ReadCommand::kInfo2}) sim->exchange(c);
    for (int i = 0; i < 50; ++i)
      for (auto c : {r1::ReadCommand::kPoll1, r1::ReadCommand::kPoll2})
        frames.push_back(sim->exchange(c));
  }
  auto replay = r1::open_replay(file);
  replay->exchange(r1::ReadCommand::kInfo1);
  replay->exchange(r1::ReadCommand::kInfo2);
  for (std::size_t i = 0; i < frames.size(); ++i)
    BOOST_TEST(replay->exchange(i % 2 ? r1::ReadCommand::kPoll2 : r1::ReadCommand::kPoll1) ==
               frames[i]);
  try {
    replay->exchange(r1::ReadCommand::kPoll1);
    BOOST_FAIL("a finished replay answered");
  } catch (const r1::TransportError& e) {
    BOOST_TEST(e.code == "ended");
  }
  // Out of step: the file has a poll where the driver asks for info.
  auto again = r1::open_replay(file);
  again->exchange(r1::ReadCommand::kInfo1);
  BOOST_CHECK_THROW(again->exchange(r1::ReadCommand::kPoll1), r1::TransportError);
}

// A gate's readings file (kiln/nodes/telemetry_driver.hpp) is served as R1 frames that decode
// to its readings; a malformed line is named.
BOOST_AUTO_TEST_CASE(gate_readings_are_served_as_frames) {
  test::TempDir dir;
  const auto file = dir.path() / "readings.jsonl";
  std::vector<telemetry::Sample> readings;
  for (int i = 0; i < 5; ++i)
    readings.push_back(telemetry::Sample{1796290000.0 + i, 150.25 + i, 230.5 - i, 9.5, 7, 3, 6, 6});
  nodes::write_gate_readings(file, readings);
  auto t = r1::open_readings(file);
  t->exchange(r1::ReadCommand::kInfo1);
  t->exchange(r1::ReadCommand::kInfo2);
  for (const auto& want : readings) {
    std::string why;
    auto f = r1::decode_frame1(t->exchange(r1::ReadCommand::kPoll1), &why);
    BOOST_REQUIRE_MESSAGE(f, why);
    BOOST_TEST(f->bt == static_cast<float>(want.bt));
    BOOST_TEST(f->drum_temp == static_cast<float>(want.et));
    BOOST_TEST(f->heater == want.heater);
    BOOST_TEST(f->state == want.state);
  }
  try {
    t->exchange(r1::ReadCommand::kPoll1);
    BOOST_FAIL("the readings' end answered");
  } catch (const r1::TransportError& e) {
    BOOST_TEST(e.code == "ended");
  }
  {
    std::ofstream bad(dir.path() / "bad.jsonl");
    bad << "{\"t\": 1, \"bt\": 2}\n";
  }
  try {
    r1::open_readings(dir.path() / "bad.jsonl");
    BOOST_FAIL("a malformed readings file opened");
  } catch (const r1::TransportError& e) {
    BOOST_TEST(e.code == "device_not_found");
    BOOST_TEST(std::string(e.what()).find("bad.jsonl:1: not a reading") != std::string::npos,
               e.what());
  }
}

// Two gates run at once share a gates directory (ctest -j runs the sim's and the R1's gates
// together): a readings file being rewritten is read whole, never half-written.
BOOST_AUTO_TEST_CASE(a_readings_file_being_rewritten_reads_whole) {
  test::TempDir dir;
  const auto file = dir.path() / "telemetry_driver.readings.jsonl";
  std::vector<telemetry::Sample> readings;
  for (int i = 0; i < 4000; ++i)
    readings.push_back(telemetry::Sample{1796290000.0 + i, 150.25, 230.5, 9.5, 7, 3, 6, 6});
  nodes::write_gate_readings(file, readings);
  std::atomic<bool> done{false};
  std::atomic<int> overlapped{0};  // reads started while the writer was still rewriting
  int rewrites = 0;
  std::thread writer([&] {
    // At least 30 rewrites, and on until 20 reads have run beside them (a slow reader on a
    // loaded machine would otherwise see few or none).
    for (; rewrites < 30 || (overlapped < 20 && rewrites < 100000); ++rewrites)
      nodes::write_gate_readings(file, readings);
    done = true;
  });
  int reads = 0;
  std::string failure;
  while (!done || reads == 0) {
    if (!done) ++overlapped;
    try {
      const auto got = nodes::read_gate_readings(file);
      if (got.size() != readings.size() && failure.empty())
        failure = std::to_string(got.size()) + " of " + std::to_string(readings.size());
    } catch (const std::exception& e) {
      if (failure.empty()) failure = e.what();
    }
    ++reads;
  }
  writer.join();
  BOOST_TEST(failure.empty(), "a read saw a partly written file: " << failure);
  BOOST_TEST(overlapped.load() >= 20, overlapped.load()
                                          << " reads beside " << rewrites << " rewrites");
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    BOOST_TEST(entry.path().filename() == file.filename(), "left behind: " << entry.path());
}

// A roastery with two roasters on one machine: each recorder names the USB port of its own
// (usb_port); with two plugged in and none named, neither is opened at a guess.
BOOST_AUTO_TEST_CASE(the_roaster_to_read_is_chosen_by_its_usb_port) {
  auto refusal = [](const std::vector<std::string>& ports, const std::string& wanted) {
    try {
      r1::choose_usb(ports, wanted);
      return std::string("chosen");
    } catch (const r1::TransportError& e) {
      BOOST_TEST(e.code == "device_not_found");
      return std::string(e.what());
    }
  };
  BOOST_TEST(r1::choose_usb({"1-2"}, "") == 0u);
  BOOST_TEST(r1::choose_usb({"1-2", "1-4.1"}, "1-4.1") == 1u);
  BOOST_TEST(r1::choose_usb({"1-2"}, "1-2") == 0u);
  const auto two = refusal({"1-2", "1-4.1"}, "");
  BOOST_TEST(two.find("2 Aillio Bullet R1s on USB (ports 1-2, 1-4.1): set "
                      "plugin_config.telemetry_bullet_r1.usb_port") != std::string::npos,
             two);
  const auto elsewhere = refusal({"1-2", "1-4.1"}, "2-1");
  BOOST_TEST(elsewhere.find("no Aillio Bullet R1 at USB port 2-1 (usb_port); found at 1-2, "
                            "1-4.1") != std::string::npos,
             elsewhere);
  BOOST_TEST(refusal({}, "1-2").find("no Aillio Bullet R1 on USB") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(without_a_roaster_usb_says_so) {
  try {
    auto t = r1::open_usb();
    // A roaster is attached to this machine: then it must answer as one.
    BOOST_TEST_MESSAGE("a Bullet R1 is attached to this machine; not-found path not tested");
    BOOST_REQUIRE(t);
    std::string why;
    const auto info1 = t->exchange(r1::ReadCommand::kInfo1);
    const auto info2 = t->exchange(r1::ReadCommand::kInfo2);
    BOOST_TEST(r1::decode_info(info1, info2, &why).has_value(), why);
  } catch (const r1::TransportError& e) {
    BOOST_TEST((e.code == "device_not_found" || e.code == "no_permission"), e.code);
    BOOST_TEST(std::string(e.what()).size() > 20u, e.what());
  }
}
