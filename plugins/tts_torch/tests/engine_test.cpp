// tts_engine/torch: the kind's contract on the default node with the embedded voice; voice
// loading (corrupt model, strict vs fallback, unload); a Piper-signature voice with the espeak
// front end dropped in as a folder.
#define BOOST_TEST_MODULE tts_engine_torch
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "kiln/nodes/tts_engine.hpp"
#include "kiln/testkit/tts_engine.hpp"
#include "runtime/kernel.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace kiln;

namespace {

// A kernel with the first-party plugins, nodes unresolved, everything else in a temp dir.
std::unique_ptr<runtime::Kernel> boot(const test::TempDir& dir,
                                      std::vector<std::string> sets = {}) {
  runtime::BootOptions o;
  o.environment = {};
  o.setup_logging = false;
  o.resolve_nodes = false;
  o.sets = {std::string("plugins.search_paths=[") + KILN_PLUGIN_DIR + "]",
            "gates.dir=" + (dir.path() / "gates").string(),
            "storage.path=" + (dir.path() / "kiln.db").string()};
  o.sets.insert(o.sets.end(), sets.begin(), sets.end());
  return runtime::Kernel::boot(o);
}

std::shared_ptr<nodes::TtsEngine> torch_node(runtime::Kernel& k) {
  auto* entry = k.registry().find_node("tts_engine", "torch");
  BOOST_REQUIRE_MESSAGE(entry, "node tts_engine/torch is not loaded");
  return std::static_pointer_cast<nodes::TtsEngine>(
      k.node_maker(*entry, true)(k.config().section("tts_engine")));
}

void copy_voice_json(const fs::path& to) {
  fs::create_directories(to);
  fs::copy_file(fs::path(KILN_VOICES_DIR) / "kiln-slt-small" / "voice.json", to / "voice.json",
                fs::copy_options::overwrite_existing);
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_default_node_passes_the_kind_contract) {
  test::TempDir dir;
  auto k = boot(dir);
  auto* entry = k->registry().find_node("tts_engine", "torch");
  BOOST_REQUIRE(entry);
  auto make = k->node_maker(*entry, false);
  auto report = testkit::run_tts_engine_contract([make](const json::object& cfg) {
    return std::static_pointer_cast<nodes::TtsEngine>(make(cfg));
  });
  for (const auto& c : report.checks) BOOST_TEST(c.passed, c.name << ": " << c.detail);
  BOOST_TEST(report.checks.size() >= 15u);
}

BOOST_AUTO_TEST_CASE(a_corrupt_model_fails_to_load_with_a_clear_error_and_others_keep_working) {
  test::TempDir dir;
  copy_voice_json(dir.path() / "voices" / "broken");
  std::ofstream(dir.path() / "voices" / "broken" / "model.pt") << "this is not a TorchScript zip";
  auto k =
      boot(dir, {"plugin_config.tts_torch.voices_dirs=[" + (dir.path() / "voices").string() + "]"});
  auto node = torch_node(*k);
  bool listed = false;
  for (const auto& v : node->voices()) listed = listed || v.id == "broken";
  BOOST_TEST(listed);
  auto r = node->load_voice("broken");
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == nodes::tts_error::kVoiceUnavailable);
  BOOST_TEST(r.error().message.find("model.pt") != std::string::npos, r.error().message);
  BOOST_TEST(r.error().message.find("does not load as a TorchScript module") != std::string::npos,
             r.error().message);
  for (const auto& v : node->voices())
    if (v.id == "broken") {
      BOOST_TEST(v.state == "failed");
      BOOST_TEST(!v.error.empty());
    }
  // strict (the default): a request for it fails; the default voice still speaks.
  auto strict = node->synthesize({"Hello there.", "broken", 1.0});
  BOOST_TEST(!strict.ok());
  auto fine = node->synthesize({"Hello there.", "", 1.0});
  BOOST_REQUIRE(fine.ok());
  BOOST_TEST(fine.value().voice == "kiln-slt-small");
}

BOOST_AUTO_TEST_CASE(fallback_mode_speaks_a_failed_voice_s_requests_with_the_default) {
  test::TempDir dir;
  copy_voice_json(dir.path() / "voices" / "broken");
  std::ofstream(dir.path() / "voices" / "broken" / "model.pt") << "garbage";
  auto k =
      boot(dir, {"plugin_config.tts_torch.voices_dirs=[" + (dir.path() / "voices").string() + "]",
                 "plugin_config.tts_torch.load_mode=fallback"});
  auto node = torch_node(*k);
  auto r = node->synthesize({"Hello there.", "broken", 1.0});
  BOOST_REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  BOOST_TEST(r.value().voice == "kiln-slt-small");
  auto unknown = node->synthesize({"Hello there.", "nobody", 1.0});
  BOOST_REQUIRE(!unknown.ok());  // fallback covers failed voices, not unknown names
  BOOST_TEST(unknown.error().code == nodes::tts_error::kUnknownVoice);
}

BOOST_AUTO_TEST_CASE(a_bad_default_voice_fails_the_node_in_strict_mode) {
  test::TempDir dir;
  BOOST_CHECK_EXCEPTION(torch_node(*boot(dir, {"plugin_config.tts_torch.default_voice=nobody"})),
                        std::exception, [](const std::exception& e) {
                          return std::string(e.what()).find("default voice 'nobody' not found") !=
                                 std::string::npos;
                        });
}

BOOST_AUTO_TEST_CASE(a_piper_signature_voice_with_espeak_phonemes_drops_in_as_a_folder) {
  // A stand-in for a Piper export (piper_train.export_torchscript): the same six inputs, a tuple
  // out whose first element is audio [1,1,N] — here 256 samples per phoneme id.
  test::TempDir dir;
  const fs::path voice = dir.path() / "voices" / "piper-like";
  fs::create_directories(voice);
  const std::string script = R"(
import sys, torch
class Piper(torch.nn.Module):
    def forward(self, text, text_lengths, sid, noise_scale, length_scale, noise_w):
        n = int(text_lengths[0]) * 256
        t = torch.arange(n, dtype=torch.float32)
        return (0.3 * torch.sin(t * 0.05)).view(1, 1, -1), text
torch.jit.script(Piper()).save(sys.argv[1])
)";
  std::ofstream(dir.path() / "make.py") << script;
  auto made = test::run(
      {"/usr/bin/python3", (dir.path() / "make.py").string(), (voice / "model.pt").string()});
  BOOST_REQUIRE_MESSAGE(made.exit_code == 0, made.err);
  // Piper's config shape, with an id map over the IPA that espeak-ng writes for English.
  json::object id_map{{"_", json::array{0}}, {"^", json::array{1}}, {"$", json::array{2}},
                      {" ", json::array{3}}, {".", json::array{4}}, {",", json::array{5}}};
  std::int64_t next = 6;
  for (const char* p :
       {"a",        "b",        "d",        "e",        "f",        "h",        "i",
        "j",        "k",        "l",        "m",        "n",        "o",        "p",
        "r",        "s",        "t",        "u",        "v",        "w",        "z",
        "\xC3\xA6", "\xC3\xB0", "\xC5\x8B", "\xC9\x91", "\xC9\x94", "\xC9\x99", "\xC9\x9A",
        "\xC9\x9B", "\xC9\xAA", "\xC9\xB9", "\xCA\x83", "\xCA\x8A", "\xCA\x8C", "\xCA\x92",
        "\xCB\x88", "\xCB\x8C", "\xCB\x90", "\xCE\xB8", "\xC9\xBE", "\xCA\x94", "\xC9\x90"})
    id_map[p] = json::array{next++};
  json::object cfg{
      {"audio", json::object{{"sample_rate", 22050}}},
      {"espeak", json::object{{"voice", "en-us"}}},
      {"inference", json::object{{"noise_scale", 0.667}, {"length_scale", 1}, {"noise_w", 0.8}}},
      {"phoneme_type", "espeak"},
      {"phoneme_id_map", id_map},
      {"num_symbols", next},
      {"num_speakers", 1}};
  std::ofstream(voice / "voice.json") << json::serialize(cfg);
  auto k =
      boot(dir, {"plugin_config.tts_torch.voices_dirs=[" + (dir.path() / "voices").string() + "]"});
  auto node = torch_node(*k);
  auto r = node->synthesize({"Hello world.", "piper-like", 1.0});
  BOOST_REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  BOOST_TEST(r.value().sample_rate == 22050);
  const auto n = r.value().samples.size();
  BOOST_TEST(n % 256 == 0u);
  // ^ _ (phoneme _)* $ : an odd number of ids, at least "hello world" worth of phonemes.
  BOOST_TEST((n / 256) % 2 == 1u);
  BOOST_TEST(n / 256 >= 2 * 8 + 3u);
}
