/*
 * clock.c - the wall clock as the manifests and the run registry write it
 * (milliseconds, so that runs started within the same second still order
 * by start), and crash points: named steps where a test can have the
 * process SIGKILL itself (TANDEM_CRASH_AT), to check what a crash at that
 * step leaves behind without timing a kill from outside.
 */
#include <pthread.h>
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

/* TANDEM_CRASH_AT, read once: the point's name and which passage. */
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;
static char crash_name[64]; /* empty: no crash point armed */
static long crash_passage;
static atomic_long crash_reached;

static void read_crash_spec(void) {
  const char *spec = getenv("TANDEM_CRASH_AT");
  if (spec == NULL || strlen(spec) >= sizeof crash_name) return;
  snprintf(crash_name, sizeof crash_name, "%s", spec);
  crash_passage = 1;
  char *colon = strchr(crash_name, ':');
  if (colon != NULL) {
    *colon = '\0';
    crash_passage = strtol(colon + 1, NULL, 10);
  }
}

void tdm__crash_point(const char *name) {
  pthread_once(&crash_once, read_crash_spec);
  if (crash_name[0] == '\0' || strcmp(name, crash_name) != 0) return;
  if (atomic_fetch_add(&crash_reached, 1) + 1 == crash_passage) {
    /* Unbuffered: the test reads which point the process died at. */
    static const char note[] = "tandem: crash point reached (TANDEM_CRASH_AT)\n";
    ssize_t ignored = write(STDERR_FILENO, note, sizeof note - 1);
    (void)ignored;
    kill(getpid(), SIGKILL);
  }
}
