/*
 * open_loop.c - an open-loop HTTP load generator for the live benchmarks:
 * request i is due at start + i / rate whatever the answers before it
 * (as `hey -q` or wrk2 do, unlike wrk's closed loop, where a slow answer
 * delays that connection's next request and hides the delay from the
 * percentiles). Each request's latency is counted from when it was due,
 * not from when a connection was free to send it, so a server that falls
 * behind shows its queue in the tail instead of slowing the load down.
 *
 *   open-loop --host 127.0.0.1 --port P --path /v1/pipelines/fraud/events \
 *             --bodies FILE --rate R --seconds S [--connections C]
 *
 * FILE holds one request body per line (sent as application/json); request
 * i sends line i modulo the line count, so a file of unique events gives
 * unique requests. Up to C keep-alive connections (default 64) are opened
 * at the start; a due request waits for a free one. It prints one line,
 * "OPEN_LOOP_JSON {...}": requests due, answered, non-2xx, the achieved
 * rate, latency percentiles in microseconds, and how many requests found
 * no free connection when due (a sign that C is too small for the rate and
 * latency, or that the server has fallen behind).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct connection {
  int fd;
  int busy;       /* a request is out: its answer is being read */
  size_t request; /* the request index it carries */
  char *out;      /* the request's bytes left to write */
  size_t out_len, out_sent;
  char in[65536]; /* the answer read so far */
  size_t in_len;
} connection;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "open-loop: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int open_connection(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "open-loop: --host must be an IPv4 address\n");
    exit(2);
  }
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* The status and total length of a complete answer in c->in, or 0 while
 * it is incomplete. Answers must carry Content-Length (tandem's do). */
static size_t complete_answer(const connection *c, int *status) {
  const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  if (end == NULL) return 0;
  size_t head = (size_t)(end - c->in) + 4;
  *status = atoi(c->in + 9);
  size_t body = 0;
  for (const char *p = c->in; p < end; p++) {
    if ((p == c->in || p[-1] == '\n') &&
        strncasecmp(p, "Content-Length:", 15) == 0)
      body = strtoull(p + 15, NULL, 10);
  }
  return c->in_len >= head + body ? head + body : 0;
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t percentile(const uint64_t *sorted, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return sorted[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path = "/", *bodies_path = NULL;
  int port = 0;
  double rate = 1000, seconds = 10;
  size_t connections = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host"))
      host = argv[i + 1];
    else if (!strcmp(argv[i], "--port"))
      port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--path"))
      path = argv[i + 1];
    else if (!strcmp(argv[i], "--bodies"))
      bodies_path = argv[i + 1];
    else if (!strcmp(argv[i], "--rate"))
      rate = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--seconds"))
      seconds = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--connections"))
      connections = (size_t)atoi(argv[i + 1]);
    else {
      fprintf(stderr, "open-loop: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (port <= 0 || bodies_path == NULL || rate <= 0 || seconds <= 0 ||
      connections == 0) {
    fprintf(stderr,
            "usage: open-loop --port P --bodies FILE --rate R "
            "--seconds S [--host H] [--path P] [--connections C]\n");
    return 2;
  }

  /* Every request's bytes, made before the clock starts. */
  FILE *f = fopen(bodies_path, "r");
  if (f == NULL) die(bodies_path);
  size_t num_bodies = 0, cap = 0;
  char **requests = NULL;
  size_t *lengths = NULL;
  char *line = NULL;
  size_t line_cap = 0;
  ssize_t n;
  while ((n = getline(&line, &line_cap, f)) > 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    if (n == 0) continue;
    if (num_bodies == cap) {
      cap = cap ? 2 * cap : 1024;
      requests = realloc(requests, cap * sizeof *requests);
      lengths = realloc(lengths, cap * sizeof *lengths);
      if (requests == NULL || lengths == NULL) die("realloc");
    }
    int len = asprintf(&requests[num_bodies],
                       "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                       "application/json\r\nContent-Length: %zd\r\n\r\n%.*s",
                       path, host, n, (int)n, line);
    if (len < 0) die("asprintf");
    lengths[num_bodies++] = (size_t)len;
  }
  free(line);
  fclose(f);
  if (num_bodies == 0) {
    fprintf(stderr, "open-loop: %s has no bodies\n", bodies_path);
    return 2;
  }

  size_t total = (size_t)(rate * seconds);
  uint64_t *latency = calloc(total + 1, sizeof *latency);
  connection *conns = calloc(connections, sizeof *conns);
  struct pollfd *fds = calloc(connections, sizeof *fds);
  if (latency == NULL || conns == NULL || fds == NULL) die("calloc");
  for (size_t c = 0; c < connections; c++)
    conns[c].fd = open_connection(host, port);

  double interval_ns = 1e9 / rate;
  size_t next = 0, answered = 0, bad = 0, waited = 0;
  size_t waited_mark = SIZE_MAX; /* the last request counted in waited */
  /* The free connections, as a stack, and the busy ones, in a list that
   * poll watches: finding a free connection and polling cost what is in
   * flight, not --connections, so a generous --connections costs the
   * client nothing. (Scanning and polling every connection in each turn,
   * as the first version did, made the client the busiest process at
   * 128 connections.) */
  size_t *free_stack = calloc(connections, sizeof *free_stack);
  size_t *busy = calloc(connections, sizeof *busy);
  if (free_stack == NULL || busy == NULL) die("calloc");
  size_t num_free = connections, num_busy = 0;
  for (size_t c = 0; c < connections; c++) free_stack[c] = connections - 1 - c;
  /* Wake-ups at the due time, not up to 50 us later (the default timer
   * slack), nor 1 ms early and then spinning (poll's millisecond timeout
   * rounded down to 0 did that: the client spun on a CPU between two due
   * requests, taking it from the server it measures). */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  uint64_t start = now_ns();
  while (answered < total) {
    uint64_t now = now_ns();
    /* Send every due request that a free connection can take. */
    while (next < total &&
           start + (uint64_t)((double)next * interval_ns) <= now) {
      if (num_free == 0) {
        if (waited_mark != next) waited++;
        waited_mark = next;
        break; /* due, no free connection: its latency keeps counting */
      }
      size_t c = free_stack[--num_free];
      busy[num_busy++] = c;
      connection *k = &conns[c];
      k->busy = 1;
      k->request = next;
      k->out = requests[next % num_bodies];
      k->out_len = lengths[next % num_bodies];
      k->out_sent = 0;
      k->in_len = 0;
      ssize_t w = write(k->fd, k->out, k->out_len);
      if (w < 0 && errno != EAGAIN) die("write");
      if (w > 0) k->out_sent = (size_t)w;
      next++;
    }
    for (size_t i = 0; i < num_busy; i++) {
      connection *k = &conns[busy[i]];
      fds[i].fd = k->fd;
      fds[i].events = POLLIN;
      if (k->out_sent < k->out_len) fds[i].events |= POLLOUT;
      fds[i].revents = 0;
    }
    /* Sleep until the next request is due (to the nanosecond), or an
     * answer arrives; with every request sent, until an answer. */
    struct timespec wait = {1, 0};
    if (next < total && num_free > 0) {
      uint64_t due = start + (uint64_t)((double)next * interval_ns);
      now = now_ns();
      uint64_t left = due > now ? due - now : 0;
      wait.tv_sec = (time_t)(left / 1000000000u);
      wait.tv_nsec = (long)(left % 1000000000u);
    }
    if (ppoll(fds, num_busy, &wait, NULL) < 0 && errno != EINTR) die("ppoll");
    size_t still_busy = 0;
    for (size_t i = 0; i < num_busy; i++) {
      size_t c = busy[i];
      connection *k = &conns[c];
      busy[still_busy++] = c; /* undone below when its answer is complete */
      if ((fds[i].revents & POLLOUT) && k->out_sent < k->out_len) {
        ssize_t w =
            write(k->fd, k->out + k->out_sent, k->out_len - k->out_sent);
        if (w < 0 && errno != EAGAIN) die("write");
        if (w > 0) k->out_sent += (size_t)w;
      }
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = read(k->fd, k->in + k->in_len, sizeof k->in - k->in_len);
      if (r == 0) {
        fprintf(stderr, "open-loop: the server closed a connection\n");
        return 1;
      }
      if (r < 0) {
        if (errno == EAGAIN) continue;
        die("read");
      }
      k->in_len += (size_t)r;
      int status = 0;
      if (complete_answer(k, &status) == 0) {
        if (k->in_len == sizeof k->in) {
          fprintf(stderr, "open-loop: an answer over 64 KiB\n");
          return 1;
        }
        continue;
      }
      uint64_t due = start + (uint64_t)((double)k->request * interval_ns);
      latency[answered++] = now_ns() - due;
      if (status < 200 || status >= 300) bad++;
      k->busy = 0;
      still_busy--;
      free_stack[num_free++] = c;
    }
    num_busy = still_busy;
  }
  double elapsed = (double)(now_ns() - start) * 1e-9;
  qsort(latency, answered, sizeof *latency, compare_u64);
  printf(
      "OPEN_LOOP_JSON {\"rate\":%.3f,\"seconds\":%.3f,\"connections\":%zu,"
      "\"requests\":%zu,\"answered\":%zu,\"non_2xx\":%zu,"
      "\"achieved_per_s\":%.3f,\"no_free_connection\":%zu,"
      "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
      "\"p99_9\":%.1f,\"max\":%.1f}}\n",
      rate, seconds, connections, total, answered, bad,
      (double)answered / elapsed, waited,
      percentile(latency, answered, 50) / 1e3,
      percentile(latency, answered, 90) / 1e3,
      percentile(latency, answered, 99) / 1e3,
      percentile(latency, answered, 99.9) / 1e3,
      answered ? latency[answered - 1] / 1e3 : 0.0);
  for (size_t c = 0; c < connections; c++) close(conns[c].fd);
  for (size_t i = 0; i < num_bodies; i++) free(requests[i]);
  free(requests);
  free(lengths);
  free(latency);
  free(conns);
  free(fds);
  free(free_stack);
  free(busy);
  return 0;
}
