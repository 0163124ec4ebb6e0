/* A minimal paced Pub/Sub client, the floor.sh context for eventbench's p50.
 * Two connections (TCP_NODELAY), open loop like eventbench: the main thread
 * publishes message i at start + i/rate (clock_nanosleep, 1 µs timer slack),
 * never waiting for replies; a second thread blocks on the subscriber
 * connection and records each push's receive time minus its intended send time.
 * With a fifth argument `ping` it sends PING at the same pace instead and
 * times each round trip on one connection: the one-hop path of
 * redis-benchmark's PING, but with the idle gaps of a paced client.
 * Usage: paced_pubsub PORT RATE COUNT PAYLOAD_BYTES [ping]; prints the p50 in µs
 * (and the p99 after it, for Pub/Sub, when PACED_P99 is set: efficiency.sh). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench_net.h"

static int sub, push_len, count;
static long long start, period, *latency;

/* Pushes arrive in order and all have the same length. */
static void *subscriber(void *unused) {
    char push[4096];
    (void)unused;
    for (int i = 0; i < count; i++) {
        read_exactly(sub, push, push_len);
        latency[i] = now_ns() - (start + i * period);
    }
    return NULL;
}

/* PING at each deadline, waiting for its reply: latency from the deadline. */
static void paced_ping(int port) {
    int s = connect_to(port);
    char reply[7];
    for (int i = 0; i < count; i++) {
        long long due = start + i * period;
        struct timespec t = {due / 1000000000, due % 1000000000};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        if (write(s, "*1\r\n$4\r\nPING\r\n", 14) != 14) { perror("write"); exit(1); }
        read_exactly(s, reply, sizeof reply); /* +PONG\r\n */
        latency[i] = now_ns() - due;
    }
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "ping") == 0)) {
        fprintf(stderr, "usage: %s PORT RATE COUNT PAYLOAD_BYTES [ping]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), size = atoi(argv[4]);
    count = atoi(argv[3]);
    period = (long long)(1e9 / atof(argv[2]));
    const char *ch = "paced";
    char cmd[4096], push[4096];
    if (count <= 0 || size <= 0 || size > 1024) { fprintf(stderr, "COUNT > 0, 0 < PAYLOAD_BYTES <= 1024\n"); return 2; }
    prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);

    latency = calloc(count, sizeof *latency);
    if (argc == 6) {
        start = now_ns() + 10000000;
        paced_ping(port);
        qsort(latency, count, sizeof *latency, by_value);
        printf("%.1f\n", latency[count / 2] / 1e3);
        return 0;
    }
    int pub = connect_to(port);
    sub = connect_to(port);
    int n = snprintf(cmd, sizeof cmd, "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n", strlen(ch), ch);
    if (write(sub, cmd, n) != n) { perror("write"); return 1; }
    int confirm = snprintf(push, sizeof push, "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", strlen(ch), ch);
    read_exactly(sub, push, confirm);

    char payload[1024];
    memset(payload, 'x', sizeof payload);
    int head = snprintf(cmd, sizeof cmd, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(ch), ch, size);
    memcpy(cmd + head, payload, size);
    memcpy(cmd + head + size, "\r\n", 2);
    int cmd_len = head + size + 2;
    push_len = snprintf(push, sizeof push, "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(ch), ch, size) + size + 2;

    start = now_ns() + 10000000;
    pthread_t reader;
    pthread_create(&reader, NULL, subscriber, NULL);
    for (int i = 0; i < count; i++) {
        long long due = start + i * period;
        struct timespec t = {due / 1000000000, due % 1000000000};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        if (write(pub, cmd, cmd_len) != cmd_len) { perror("write"); return 1; }
    }
    pthread_join(reader, NULL);
    qsort(latency, count, sizeof *latency, by_value);
    if (getenv("PACED_P99"))
        printf("%.1f %.1f\n", latency[count / 2] / 1e3, latency[(long long)count * 99 / 100] / 1e3);
    else
        printf("%.1f\n", latency[count / 2] / 1e3);
    return 0;
}
