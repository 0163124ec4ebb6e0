/* Helpers shared by the C references of the performance scripts
 * (paced_pubsub.c, fanout_c.c): the monotonic clock, a TCP_NODELAY loopback
 * connection, and reading an exact number of bytes. */
#ifndef BENCH_NET_H
#define BENCH_NET_H
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int connect_to(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); exit(1); }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

static void read_exactly(int s, char *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t k = read(s, buf + got, n - got);
        if (k <= 0) { perror("read"); exit(1); }
        got += (size_t)k;
    }
}
#endif
