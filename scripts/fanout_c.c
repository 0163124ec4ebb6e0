/* A minimal fan-out client, the fanout.sh reference: N subscriber connections
 * (TCP_NODELAY) on one channel, read by one thread with epoll, and a publisher
 * thread that sends PUBLISH at start + i/rate (clock_nanosleep, 1 us timer
 * slack), never waiting for replies. Each push's latency is its receive time
 * minus its intended send time (pushes arrive in order and have one length,
 * so a connection's k-th push is message k).
 * Usage: fanout_c PORT RATE COUNT PAYLOAD_BYTES SUBSCRIBERS; prints "p50 p99" in µs. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench_net.h"

static int pub, cmd_len, count;
static long long start, period;
static char cmd[4096];

static void *publisher(void *unused) {
    (void)unused;
    for (int i = 0; i < count; i++) {
        long long due = start + i * period;
        struct timespec t = {due / 1000000000, due % 1000000000};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        if (write(pub, cmd, cmd_len) != cmd_len) { perror("write"); exit(1); }
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s PORT RATE COUNT PAYLOAD_BYTES SUBSCRIBERS\n", argv[0]); return 2; }
    int port = atoi(argv[1]), size = atoi(argv[4]), subs = atoi(argv[5]);
    count = atoi(argv[3]);
    period = (long long)(1e9 / atof(argv[2]));
    if (count <= 0 || size <= 0 || size > 1024 || subs <= 0) { fprintf(stderr, "bad arguments\n"); return 2; }
    prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
    const char *ch = "fanout";
    char buf[65536];
    int ep = epoll_create1(0);
    int *fd = calloc(subs, sizeof *fd);
    long *seen = calloc(subs, sizeof *seen); /* bytes of pushes read so far */
    int n = snprintf(cmd, sizeof cmd, "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n", strlen(ch), ch);
    int confirm = snprintf(buf, sizeof buf, "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", strlen(ch), ch);
    for (int i = 0; i < subs; i++) {
        fd[i] = connect_to(port);
        if (write(fd[i], cmd, n) != n) { perror("write"); return 1; }
        read_exactly(fd[i], buf, confirm);
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e);
    }
    pub = connect_to(port);
    char payload[1024];
    memset(payload, 'x', sizeof payload);
    int head = snprintf(cmd, sizeof cmd, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(ch), ch, size);
    memcpy(cmd + head, payload, size);
    memcpy(cmd + head + size, "\r\n", 2);
    cmd_len = head + size + 2;
    long push_len = snprintf(buf, sizeof buf, "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(ch), ch, size) + size + 2;

    long long *latency = calloc((size_t)count * subs, sizeof *latency), total = (long long)count * subs, got = 0;
    start = now_ns() + 50000000;
    pthread_t p;
    pthread_create(&p, NULL, publisher, NULL);
    struct epoll_event ev[1024];
    while (got < total) {
        int k = epoll_wait(ep, ev, 1024, 5000);
        if (k <= 0) { fprintf(stderr, "timed out with %lld of %lld pushes\n", got, total); return 1; }
        long long now = now_ns();
        for (int j = 0; j < k; j++) {
            int i = (int)ev[j].data.u32;
            ssize_t r = read(fd[i], buf, sizeof buf);
            if (r <= 0) { perror("read"); return 1; }
            long before = seen[i] / push_len;
            seen[i] += r;
            for (long m = before; m < seen[i] / push_len; m++) latency[got++] = now - (start + m * period);
        }
    }
    pthread_join(p, NULL);
    qsort(latency, total, sizeof *latency, by_value);
    printf("%.1f %.1f\n", latency[total / 2] / 1e3, latency[total * 99 / 100] / 1e3);
    return 0;
}
