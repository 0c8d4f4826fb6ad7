/*
 * clock.c - the wall clock as the manifests and the run registry write it
 * (milliseconds, so that runs started within the same second still order
 * by start), and crash points: named steps where a test can have the
 * process SIGKILL itself (armed by the CLI from TANDEM_CRASH_AT), to check
 * what a crash at that step leaves behind without timing a kill from
 * outside.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

int64_t tdm__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tdm__utc_text(int64_t ms, char buf[32]) {
  time_t seconds = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&seconds, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* The armed crash point: set by tdm__arm_crash_point before any thread
 * starts, then only read. */
static char crash_name[64]; /* empty: no crash point armed */
static long crash_passage;
static atomic_long crash_reached;

int tdm__arm_crash_point(const char *spec) {
  crash_name[0] = '\0';
  if (spec == NULL || spec[0] == '\0' || strlen(spec) >= sizeof crash_name)
    return TDM_EINVAL;
  char name[sizeof crash_name];
  snprintf(name, sizeof name, "%s", spec);
  long passage = 1;
  char *colon = strchr(name, ':');
  if (colon != NULL) {
    char *end;
    *colon = '\0';
    passage = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || passage < 1) return TDM_EINVAL;
  }
  if (name[0] == '\0') return TDM_EINVAL;
  crash_passage = passage;
  memcpy(crash_name, name, sizeof crash_name);
  return TDM_OK;
}

void tdm__crash(void) {
  /* Unbuffered: the test reads which point the process died at. */
  static const char note[] = "tandem: crash point reached (TANDEM_CRASH_AT)\n";
  ssize_t ignored = write(STDERR_FILENO, note, sizeof note - 1);
  (void)ignored;
  kill(getpid(), SIGKILL);
  /* SIGKILL cannot be caught; this only tells the compiler so. */
  abort();
}

void tdm__crash_point(const char *name) {
  if (crash_name[0] == '\0' || strcmp(name, crash_name) != 0) return;
  if (atomic_fetch_add(&crash_reached, 1) + 1 == crash_passage) tdm__crash();
}

int tdm__crash_point_due(const char *name, uint64_t count) {
  return crash_name[0] != '\0' && strcmp(name, crash_name) == 0 &&
         count >= (uint64_t)crash_passage;
}
