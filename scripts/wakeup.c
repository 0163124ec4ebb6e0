// What a wake-up costs on this machine, as a floor for any paced client:
// a thread that does nothing but sleep on a periodic timerfd and wake up,
// for 2 s per period given, and the CPU (user + system) it takes for that.
// A plain system call (getppid) is timed too, to tell the cost of entering
// the kernel from the cost of sleeping and being woken.
//
//   cc -O2 -o wakeup scripts/wakeup.c && ./wakeup 20000 50000 100000
//
// One line per period: period_ns wakeups_per_s cpu_cores cpu_us_per_wakeup,
// after a first line: syscall_ns.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
    const long calls = 1000000;
    double c0 = cpu_s();
    for (long i = 0; i < calls; i++) syscall(SYS_getppid);
    printf("syscall_ns %.0f\n", (cpu_s() - c0) * 1e9 / calls);
    for (int a = 1; a < argc; a++) {
        long period = atol(argv[a]);
        if (period <= 0 || period >= 1000000000) {
            fprintf(stderr, "a period in ns, 1 to 999999999: %s\n", argv[a]);
            return 2;
        }
        int fd = timerfd_create(CLOCK_MONOTONIC, 0);
        struct itimerspec its = {{0, period}, {0, period}};
        if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) != 0) {
            perror("timerfd");
            return 1;
        }
        c0 = cpu_s();
        uint64_t t0 = now_ns(), t1;
        long wakeups = 0;
        while ((t1 = now_ns()) - t0 < 2000000000ull) {
            uint64_t expired;
            if (read(fd, &expired, sizeof expired) == sizeof expired) wakeups++;
        }
        double cpu = cpu_s() - c0, wall = (t1 - t0) / 1e9;
        printf("%ld %.0f %.3f %.1f\n", period, wakeups / wall, cpu / wall, cpu * 1e6 / wakeups);
        close(fd);
    }
    return 0;
}
