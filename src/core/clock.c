/*
 * clock.c - the wall clock, read in one place: the runners measure
 * state.max_future (how far ahead of now an event may be dated) from it.
 */
#include <time.h>

#include "core.h"

int64_t tdm__wall_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
