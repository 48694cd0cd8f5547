#include "audio/encode.hpp"

#include <sndfile.h>

#include "kiln/audio/pcm.hpp"

#include <algorithm>
#include <cstring>

namespace kiln::audio {

namespace {

// An in-memory file for libsndfile's virtual I/O.
struct Memory {
  std::string data;
  sf_count_t pos = 0;
};

sf_count_t vio_length(void* u) {
  return static_cast<sf_count_t>(static_cast<Memory*>(u)->data.size());
}
sf_count_t vio_seek(sf_count_t off, int whence, void* u) {
  auto* m = static_cast<Memory*>(u);
  sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : vio_length(u);
  m->pos = std::max<sf_count_t>(0, base + off);
  return m->pos;
}
sf_count_t vio_read(void* ptr, sf_count_t count, void* u) {
  auto* m = static_cast<Memory*>(u);
  const sf_count_t avail = std::max<sf_count_t>(0, vio_length(u) - m->pos);
  const sf_count_t n = std::min(count, avail);
  if (n <= 0) return 0;
  std::memcpy(ptr, m->data.data() + m->pos, static_cast<std::size_t>(n));
  m->pos += n;
  return n;
}
sf_count_t vio_write(const void* ptr, sf_count_t count, void* u) {
  auto* m = static_cast<Memory*>(u);
  const auto end = static_cast<std::size_t>(m->pos + count);
  if (m->data.size() < end) m->data.resize(end);
  std::memcpy(m->data.data() + m->pos, ptr, static_cast<std::size_t>(count));
  m->pos += count;
  return count;
}
sf_count_t vio_tell(void* u) {
  return static_cast<Memory*>(u)->pos;
}

int sndfile_format(std::string_view f) {
  if (f == "flac") return SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  if (f == "mp3") return SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III;
  if (f == "opus") return SF_FORMAT_OGG | SF_FORMAT_OPUS;
  return 0;
}

std::optional<std::string> via_sndfile(const std::vector<std::int16_t>& samples, int rate,
                                       std::string_view format, std::string* error) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = 1;
  info.format = sndfile_format(format);
  if (!sf_format_check(&info)) {
    *error = "this libsndfile cannot write " + std::string(format) + " at " + std::to_string(rate) +
             " Hz";
    return std::nullopt;
  }
  Memory mem;
  SF_VIRTUAL_IO io{vio_length, vio_seek, vio_read, vio_write, vio_tell};
  SNDFILE* f = sf_open_virtual(&io, SFM_WRITE, &info, &mem);
  if (!f) {
    *error = std::string("libsndfile: ") + sf_strerror(nullptr);
    return std::nullopt;
  }
  const auto n = static_cast<sf_count_t>(samples.size());
  const sf_count_t written = sf_write_short(f, samples.data(), n);
  const int rc = sf_close(f);
  if (written != n || rc != 0) {
    *error = "libsndfile: writing " + std::string(format) + " failed";
    return std::nullopt;
  }
  return std::move(mem.data);
}

}  // namespace

std::vector<std::int16_t> resample(const std::vector<std::int16_t>& in, int from, int to) {
  if (in.empty() || from == to) return in;
  const auto n = static_cast<std::size_t>(static_cast<double>(in.size()) * to / from);
  std::vector<std::int16_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(i) * from / to;
    const auto k = static_cast<std::size_t>(x);
    const double f = x - static_cast<double>(k);
    const double a = in[std::min(k, in.size() - 1)], b = in[std::min(k + 1, in.size() - 1)];
    out[i] = static_cast<std::int16_t>(a + (b - a) * f);
  }
  return out;
}

std::vector<std::string> supported_formats() {
  std::vector<std::string> out{"wav", "pcm"};
  for (const char* f : {"flac", "mp3", "opus"}) {
    SF_INFO info{};
    info.samplerate = std::string_view(f) == "opus" ? 48000 : 16000;
    info.channels = 1;
    info.format = sndfile_format(f);
    if (sf_format_check(&info)) out.emplace_back(f);
  }
  return out;
}

std::string media_type(std::string_view format, int rate) {
  if (format == "wav") return "audio/wav";
  // Raw little-endian samples: not audio/L16, which is big-endian by definition (RFC 3551), so
  // a player trusting it would swap every sample's bytes into noise.
  if (format == "pcm")
    return "audio/pcm;rate=" + std::to_string(rate) + ";channels=1;encoding=signed-int;bits=16;" +
           "endianness=little";
  if (format == "flac") return "audio/flac";
  if (format == "mp3") return "audio/mpeg";
  if (format == "opus") return "audio/ogg";
  return "";
}

std::optional<Pcm> read_wav(std::string_view bytes, std::string* error) {
  auto le = [&](std::size_t at, int n) {
    std::uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i)
      v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(i)]);
    return v;
  };
  if (bytes.size() < 12 || bytes.substr(0, 4) != "RIFF" || bytes.substr(8, 4) != "WAVE") {
    *error = "not a RIFF/WAVE file";
    return std::nullopt;
  }
  Pcm out;
  bool format_seen = false;
  for (std::size_t at = 12; at + 8 <= bytes.size();) {
    const auto id = bytes.substr(at, 4);
    const std::size_t size = le(at + 4, 4);
    const std::size_t body = at + 8;
    if (id == "fmt ") {
      if (size < 16 || body + 16 > bytes.size() || le(body, 2) != 1 || le(body + 2, 2) != 1 ||
          le(body + 14, 2) != 16) {
        *error = "a WAV file that is not 16-bit mono PCM";
        return std::nullopt;
      }
      out.sample_rate = static_cast<int>(le(body + 4, 4));
      format_seen = true;
    } else if (id == "data") {
      if (!format_seen || out.sample_rate <= 0) {
        *error = "a WAV file whose data comes before its format";
        return std::nullopt;
      }
      // A stream's header says 0xFFFFFFFF: the data runs to the end.
      const std::size_t n = std::min(size, bytes.size() - body) / 2;
      out.samples.resize(n);
      for (std::size_t i = 0; i < n; ++i)
        out.samples[i] = static_cast<std::int16_t>(le(body + 2 * i, 2));
      return out;
    }
    at = body + size + (size & 1);  // chunks are padded to an even size
    if (at < body) break;           // a size that wraps around
  }
  *error = "a WAV file without a data chunk";
  return std::nullopt;
}

std::optional<Encoded> encode(const std::vector<std::int16_t>& samples, int rate,
                              std::string_view format, std::string* error) {
  if (format == "wav") return Encoded{wav_bytes(samples, rate), media_type(format, rate)};
  if (format == "pcm") return Encoded{pcm_bytes(samples), media_type(format, rate)};
  if (sndfile_format(format) == 0) {
    *error = "unknown audio format '" + std::string(format) + "'";
    return std::nullopt;
  }
  if (format == "opus" && rate != 8000 && rate != 12000 && rate != 16000 && rate != 24000 &&
      rate != 48000) {
    auto bytes = via_sndfile(resample(samples, rate, 48000), 48000, format, error);
    if (!bytes) return std::nullopt;
    return Encoded{std::move(*bytes), media_type(format, 48000)};
  }
  auto bytes = via_sndfile(samples, rate, format, error);
  if (!bytes) return std::nullopt;
  return Encoded{std::move(*bytes), media_type(format, rate)};
}

}  // namespace kiln::audio
