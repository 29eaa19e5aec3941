// The runner protocol's frame decoder on arbitrary bytes fed in arbitrary pieces: it must
// never crash, never hand out a frame it could not re-encode, and stop at the first
// malformed frame; the typed event decoder the agent runs on every frame must never throw
// (an uncaught exception aborts the fuzzer) and must explain each refusal; so must the
// runner's decoders of the exec and prepare ops. The first input
// byte picks the piece size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/runner_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t piece = 1 + data[0] % 64;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size_t n = size - 1;
  swissbox::proto::Decoder d;
  for (size_t off = 0; off < n; off += piece) {
    d.feed(bytes + off, std::min(piece, n - off));
    while (auto f = d.next()) {
      // What came out goes back in whole: same header, same payload.
      if (f->payload.size() > swissbox::proto::kMaxPayload) abort();
      swissbox::proto::Decoder again;
      std::string wire = swissbox::proto::encode(f->header, f->payload);
      again.feed(wire.data(), wire.size());
      auto back = again.next();
      if (!back || back->header != f->header || back->payload != f->payload) abort();
      // The runner's op decoders read the same headers: they never throw either.
      std::string why;
      if (!swissbox::proto::decode_exec(f->header, &why) && why.empty()) abort();
      why.clear();
      if (!swissbox::proto::decode_prepare(f->header, &why) && why.empty()) abort();
      why.clear();
      auto event = swissbox::proto::decode_event(std::move(*f), &why);
      if (!event && why.empty()) abort();
    }
    if (!d.error().empty()) {
      // Poisoned for good: more bytes give nothing.
      d.feed("\0\0\0\0\0\0\0\0", 8);
      if (d.next()) abort();
      break;
    }
  }
  return 0;
}
