// What one atomic per frame on a cache line the other core wrote last costs a
// hashing thread: the premade source's payload reference counts in
// `hidra-bench checksum` (see bench/README.md, `checksum`, "all in").
//
// One thread hashes 64 KiB buffers with XXH3 (the x86 dispatch build, as
// Hidra) in batches of 16 and hands each digest to a second thread through a
// ring of SLOT bytes per frame (the reader reads and clears each slot). With
// COUNT=1, each frame also adds 1 to one of 8 counters, each on its own cache
// line, which the reader subtracts 1 from when it takes the frame (a reference
// count taken by the producer and released by the consumer). Between its
// batches, the hashing thread hashes 16 buffers of a second set directly, and
// prints the direct time over the handing-over time (1.0: handing over costs
// nothing), as `hidra-bench checksum` measures in situ.
//
//   cc -O2 -o /tmp/shared-count bench/c/shared-count.c -lxxhash -lpthread
//   for count in 0 1 0 1; do /tmp/shared-count 64 $count; done
//
// Arguments: SLOT (bytes per frame in the ring, a multiple of 8: 64 and 128
// compare one and two cache lines per frame), COUNT (0 or 1), BATCHES
// (default 4000).
#define XXH_DISPATCH_DISABLE_REPLACE 1
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxh_x86dispatch.h>
#include <xxhash.h>

enum { SLOTS = 512, SIZE = 64 * 1024, BUFFERS = 8, BATCH = 16 };

static int slotBytes, counting;
static long total;
static unsigned char *ring;
static _Alignas(64) atomic_long written;
static _Alignas(64) atomic_long taken;
static _Alignas(64) struct {
  atomic_long count;
  char padding[56];
} counts[BUFFERS];

static unsigned long now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long)t.tv_sec * 1000000000UL + (unsigned long)t.tv_nsec;
}

static void *reader(void *unused) {
  (void)unused;
  long read = 0;
  unsigned long sink = 0;
  while (read < total) {
    long available = atomic_load_explicit(&written, memory_order_acquire);
    if (available == read) {
      sched_yield();
      continue;
    }
    for (; read < available; read++) {
      unsigned long *slot = (unsigned long *)(ring + (read % SLOTS) * slotBytes);
      for (int word = 0; word < slotBytes / 8; word++) {
        sink ^= slot[word];
        slot[word] = 0;
      }
      if (counting) atomic_fetch_sub(&counts[read % BUFFERS].count, 1);
    }
    atomic_store_explicit(&taken, read, memory_order_release);
  }
  if (sink == 0x5eed) printf(" ");
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s SLOT COUNT [BATCHES]\n", argv[0]);
    return 2;
  }
  slotBytes = atoi(argv[1]);
  counting = atoi(argv[2]);
  int batches = argc > 3 ? atoi(argv[3]) : 4000;
  if (slotBytes < 8 || slotBytes % 8 != 0 || batches < 1) {
    fprintf(stderr, "SLOT must be a positive multiple of 8, BATCHES positive\n");
    return 2;
  }
  total = (long)batches * BATCH;
  ring = aligned_alloc(64, (size_t)SLOTS * slotBytes);
  memset(ring, 0, (size_t)SLOTS * slotBytes);
  unsigned char *handed[BUFFERS], *direct[BUFFERS];
  for (int i = 0; i < BUFFERS; i++) {
    handed[i] = aligned_alloc(64, SIZE);
    direct[i] = aligned_alloc(64, SIZE);
    for (int j = 0; j < SIZE; j++) {
      handed[i][j] = (unsigned char)rand();
      direct[i][j] = (unsigned char)rand();
    }
  }
  pthread_t thread;
  pthread_create(&thread, NULL, reader, NULL);
  unsigned long handingNanos = 0, directNanos = 0, digests = 0;
  long index = 0, seen = 0;
  int next = 0, nextDirect = 0;
  for (int batch = 0; batch < batches; batch++) {
    unsigned long start = now();
    for (int k = 0; k < BATCH; k++, index++) {
      while (index - seen >= SLOTS) {
        seen = atomic_load_explicit(&taken, memory_order_acquire);
        if (index - seen >= SLOTS) sched_yield();
      }
      if (counting) atomic_fetch_add(&counts[next].count, 1);
      unsigned long digest = XXH3_64bits_dispatch(handed[next], SIZE);
      next = (next + 1) % BUFFERS;
      unsigned long *slot = (unsigned long *)(ring + (index % SLOTS) * slotBytes);
      for (int word = 0; word < slotBytes / 8; word++) slot[word] = digest + (unsigned long)word;
    }
    atomic_store_explicit(&written, index, memory_order_seq_cst);
    unsigned long handed_ = now();
    handingNanos += handed_ - start;
    for (int k = 0; k < BATCH; k++) {
      digests ^= XXH3_64bits_dispatch(direct[nextDirect], SIZE);
      nextDirect = (nextDirect + 1) % BUFFERS;
    }
    directNanos += now() - handed_;
  }
  pthread_join(thread, NULL);
  printf("slot %d bytes, shared count %s: direct/handing over %.3f\n", slotBytes, counting ? "yes" : "no",
    (double)directNanos / (double)handingNanos);
  if (digests == 1) printf(" ");
  return 0;
}
