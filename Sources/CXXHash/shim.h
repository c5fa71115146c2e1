#ifndef HIDRA_CXXHASH_SHIM_H
#define HIDRA_CXXHASH_SHIM_H
// Debian builds XXH3_64bits generically (5 GB/s in `hidra-bench checksum` here).
// The x86 dispatch entry points pick AVX2/AVX512 at run time (50-95 GB/s). Swift cannot see the
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
/// Streaming XXH3-64 over several payload parts, through the dispatch build.
static inline XXH3_state_t *hidra_xxh3_create(void) {
  XXH3_state_t *state = XXH3_createState();
  if (state) XXH3_64bits_reset(state);
  return state;
}
static inline void hidra_xxh3_reset(XXH3_state_t *state) { XXH3_64bits_reset(state); }
static inline void hidra_xxh3_update(XXH3_state_t *state, const void *input, size_t length) {
  XXH3_64bits_update_dispatch(state, input, length);
}
static inline uint64_t hidra_xxh3_digest(const XXH3_state_t *state) { return XXH3_64bits_digest(state); }
static inline void hidra_xxh3_free(XXH3_state_t *state) { XXH3_freeState(state); }

static inline uint64_t hidra_xxh64(const void *input, size_t length, uint64_t seed) {
  return XXH64(input, length, seed);
}
#endif
