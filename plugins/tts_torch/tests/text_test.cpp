// The TTS text layer (plugins/tts_common) and the flite front end of the embedded voice.
#define BOOST_TEST_MODULE tts_text
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "flite_frontend.hpp"
#include "text.hpp"

using namespace kiln::tts;

BOOST_AUTO_TEST_CASE(check_text_names_what_is_wrong_and_where) {
  BOOST_TEST(!check_text("First crack at 9:12."));
  BOOST_TEST(
      !check_text("Caf\xC3\xA9 au lait, 205 \xC2\xB0"
                  "C"));
  auto utf8 = check_text("abc\xC3(def");
  BOOST_REQUIRE(utf8);
  BOOST_TEST(utf8->find("byte 3") != std::string::npos, *utf8);
  BOOST_TEST(utf8->find("UTF-8") != std::string::npos, *utf8);
  BOOST_TEST(check_text("overlong \xC0\xAF slash").has_value());
  BOOST_TEST(check_text("surrogate \xED\xA0\x80").has_value());
  auto bell = check_text(std::string("bean\x07temp"));
  BOOST_REQUIRE(bell);
  BOOST_TEST(bell->find("U+0007") != std::string::npos, *bell);
  BOOST_TEST(bell->find("byte 4") != std::string::npos, *bell);
  BOOST_TEST(!check_text("tab\tand\nnewlines\r\nare fine"));
  BOOST_TEST(check_text("").has_value());
  BOOST_TEST(check_text(" ... !? ").has_value());
}

BOOST_AUTO_TEST_CASE(markup_tags_are_dropped_and_entities_decoded) {
  BOOST_TEST(strip_markup("<speak><s>Hello</s> <break time=\"1s\"/>world</speak>") ==
             "  Hello   world ");
  BOOST_TEST(strip_markup("fish &amp; chips &lt;3") == "fish & chips <3");
  BOOST_TEST(strip_markup("a < b and 3<4") == "a < b and 3<4");  // not tags
}

BOOST_AUTO_TEST_CASE(sentences_split_at_terminators_not_abbreviations) {
  auto s =
      split_sentences("Dr. Smith roasted it. Was it good? Yes!  e.g. this stays.\n\nNew paragraph");
  std::vector<std::string> want{"Dr. Smith roasted it.", "Was it good?", "Yes!", "e.g. this stays.",
                                "New paragraph"};
  BOOST_TEST(s == want, boost::test_tools::per_element());
  BOOST_TEST(split_sentences("   ").empty());
  BOOST_TEST(split_sentences("... !!").empty());
}

BOOST_AUTO_TEST_CASE(long_sentences_are_cut_at_commas_then_spaces) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "word" + std::to_string(i) + (i % 10 == 9 ? ", " : " ");
  auto parts = split_sentences(text, 100);
  BOOST_TEST(parts.size() >= 3u);
  std::string joined;
  for (const auto& p : parts) {
    BOOST_TEST(p.size() <= 100u, p);
    joined += (joined.empty() ? "" : " ") + p;
  }
  BOOST_TEST(joined + " " == text);
  // One huge word is cut hard, without splitting a UTF-8 sequence.
  std::string accents;
  for (int i = 0; i < 100; ++i) accents += "\xC3\xA9";
  const auto cut = split_sentences(accents, 31);
  BOOST_TEST(cut.size() >= 7u);  // 200 bytes in pieces of at most 31
  std::string rejoined;
  for (const auto& p : cut) {
    BOOST_TEST(!check_text(p), p);
    rejoined += p;
  }
  BOOST_TEST(rejoined == accents);
}

BOOST_AUTO_TEST_CASE(normalization_of_units_times_and_abbreviations) {
  BOOST_TEST(normalize_english("Charge at 205 \xC2\xB0"
                               "C.") == "Charge at 205 degrees Celsius.");
  BOOST_TEST(normalize_english("Set 400\xC2\xB0"
                               "F now") == "Set 400 degrees Fahrenheit now");
  BOOST_TEST(normalize_english("Drop at 10:00") == "Drop at 10 o'clock");
  BOOST_TEST(normalize_english("Drop at 10:05") == "Drop at 10:05");  // engines read these
  BOOST_TEST(normalize_english("DTR 21% and 250g, 90 s, 5 min") ==
             "DTR 21 percent and 250 grams, 90 seconds, 5 minutes");
  BOOST_TEST(normalize_english("FC at 7\xE2\x80\x93"
                               "9 min") == "FC at 7 to 9 minutes");
  BOOST_TEST(normalize_english("e.g. Kenya vs. Peru, No. 5") ==
             "for example Kenya versus Peru, number 5");
  BOOST_TEST(normalize_english("No. Never.") == "No. Never.");
  BOOST_TEST(normalize_english("Batch No.5") == "Batch number 5");
  BOOST_TEST(normalize_english("No.X 5") == "No.X 5");
  BOOST_TEST(normalize_english("\xE2\x80\x9Cquoted\xE2\x80\x9D it\xE2\x80\x99s") ==
             "\"quoted\" it's");
  BOOST_TEST(normalize_english("3 guests") == "3 guests");  // not "3 grams uests"
}

BOOST_AUTO_TEST_CASE(flite_front_end_gives_stressed_cmu_phones_words_and_punctuation) {
  auto syms = FliteFrontend::instance().phonemize("Hello world. Is it?");
  std::vector<std::string> got;
  for (const auto& s : syms) got.push_back(s.symbol);
  std::vector<std::string> want{"pau", "hh",  "ax0", "l", "ow1", " ",   "w", "er1", "l",  "d",
                                ".",   "pau", "ih1", "z", " ",   "ih1", "t", "?",   "pau"};
  BOOST_TEST(got == want, boost::test_tools::per_element());
  for (const auto& s : syms) BOOST_TEST(s.end_s == -1.0);  // no timing without synthesis
  // Every symbol the front end produces is in its declared inventory.
  auto inv = FliteFrontend::instance().inventory();
  for (const auto& g : got) BOOST_TEST((std::find(inv.begin(), inv.end(), g) != inv.end()), g);
}

BOOST_AUTO_TEST_CASE(teacher_times_every_phone_in_order) {
  auto t = FliteFrontend::instance().teach("First crack at nine twelve.");
  BOOST_TEST(t.sample_rate == 16000);
  BOOST_TEST(t.samples.size() > 16000u);
  double last = 0;
  int timed = 0;
  for (const auto& s : t.symbols) {
    // Every phone is timed; a space or punctuation may not be.
    const bool phone = !s.symbol.empty() && s.symbol != " " &&
                       !std::ispunct(static_cast<unsigned char>(s.symbol[0]));
    if (phone) BOOST_TEST(s.end_s >= 0, s.symbol);
    if (s.end_s < 0) continue;
    BOOST_TEST(s.end_s >= last, s.symbol);
    last = s.end_s;
    ++timed;
  }
  BOOST_TEST(timed >= 15);  // "First crack at nine twelve." has more phones than that
  BOOST_TEST(std::abs(last - static_cast<double>(t.samples.size()) / t.sample_rate) < 0.05);
}

BOOST_AUTO_TEST_CASE(piper_id_layout_is_bos_pad_symbol_pad_eos) {
  std::map<std::string, std::vector<std::int64_t>> map{
      {"_", {0}}, {"^", {1}}, {"$", {2}}, {"a", {5}}, {"b", {6, 7}}};
  std::vector<std::string> unknown;
  auto ids = to_piper_ids({"a", "b", "zz", "a"}, map, &unknown);
  std::vector<std::int64_t> want{1, 0, 5, 0, 6, 7, 0, 5, 0, 2};
  BOOST_TEST(ids == want, boost::test_tools::per_element());
  BOOST_TEST(unknown == std::vector<std::string>{"zz"}, boost::test_tools::per_element());
}
