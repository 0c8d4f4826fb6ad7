/*
 * alloc.c - every allocation in tandem goes through these wrappers, so a
 * test can make the N-th allocation fail and check that each caller
 * reports TDM_ENOMEM and leaks nothing. Also a small growable buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Negative: never fail. Otherwise the number of allocations still allowed. */
static long alloc_countdown = -1;

void tdm__alloc_fail_after(long countdown) { alloc_countdown = countdown; }

static int alloc_should_fail(void) {
  if (alloc_countdown < 0) return 0;
  if (alloc_countdown == 0) return 1;
  alloc_countdown--;
  return 0;
}

void *tdm__malloc(size_t size) {
  if (alloc_should_fail()) return NULL;
  return malloc(size == 0 ? 1 : size);
}

void *tdm__calloc(size_t count, size_t size) {
  if (alloc_should_fail()) return NULL;
  if (count == 0 || size == 0) return calloc(1, 1);
  return calloc(count, size);
}

void *tdm__realloc(void *ptr, size_t size) {
  if (alloc_should_fail()) return NULL;
  return realloc(ptr, size == 0 ? 1 : size);
}

void tdm__free(void *ptr) { free(ptr); }

char *tdm__strndup(const char *s, size_t n) {
  char *copy = tdm__malloc(n + 1);
  if (copy == NULL) return NULL;
  memcpy(copy, s, n);
  copy[n] = '\0';
  return copy;
}

char *tdm__strdup(const char *s) { return tdm__strndup(s, strlen(s)); }

int tdm__buf_reserve(tdm__buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return TDM_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *data = tdm__realloc(b->data, cap);
  if (data == NULL) return TDM_ENOMEM;
  b->data = data;
  b->cap = cap;
  return TDM_OK;
}

int tdm__buf_append(tdm__buf *b, const void *data, size_t n) {
  if (tdm__buf_reserve(b, n) != TDM_OK) return TDM_ENOMEM;
  if (n > 0) memcpy(b->data + b->len, data, n); /* data may be NULL if n=0 */
  b->len += n;
  b->data[b->len] = '\0';
  return TDM_OK;
}

int tdm__buf_printf(tdm__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || tdm__buf_reserve(b, (size_t)n) != TDM_OK) {
    va_end(ap2);
    return TDM_ENOMEM;
  }
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  b->len += (size_t)n;
  return TDM_OK;
}

int tdm__buf_append_uint(tdm__buf *b, uint64_t v) {
  char digits[20]; /* 2^64 - 1 has 20 digits */
  size_t n = sizeof digits;
  do {
    digits[--n] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  return tdm__buf_append(b, digits + n, sizeof digits - n);
}

void tdm__buf_free(tdm__buf *b) {
  tdm__free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void tdm__keep_heap(void) {
#ifdef __GLIBC__
  /* glibc gives blocks past 128 KiB back to the kernel at once (mmap and
   * munmap, or a trim), so a loop that frees and reallocates the same
   * sizes faults in fresh zeroed pages every time, which costs more than
   * the work on them. Memory stays bounded by the callers' own limits. */
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

uint64_t tdm__hash_bytes(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 31);
}
