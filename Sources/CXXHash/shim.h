#ifndef HIDRA_CXXHASH_SHIM_H
#define HIDRA_CXXHASH_SHIM_H
// Debian builds XXH3_64bits generically (about 18 GB/s). The x86 dispatch entry
// points pick AVX2/AVX512 at run time (about 75 GB/s). Swift cannot see the
// header's `#define XXH3_64bits XXH3_64bits_dispatch`, so we wrap the dispatch
// functions in inline functions with names that say what they are.
#define XXH_DISPATCH_DISABLE_REPLACE 1
#include <xxhash.h>
#include <xxh_x86dispatch.h>
#include <stdint.h>
#include <stddef.h>

static inline uint64_t hidra_xxh3_64(const void *input, size_t length) {
  return XXH3_64bits_dispatch(input, length);
}
static inline uint64_t hidra_xxh64(const void *input, size_t length, uint64_t seed) {
  return XXH64(input, length, seed);
}
#endif
