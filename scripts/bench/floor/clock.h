// Clocks shared by curl-floor.c and sqlite-floor.c.
#ifndef FLOOR_CLOCK_H
#define FLOOR_CLOCK_H

#include <sys/resource.h>
#include <time.h>

// Monotonic wall-clock time in seconds.
static double wall_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

// This process's CPU time in seconds: user and system.
static void cpu_seconds(double *user, double *sys) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    *user = (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6;
    *sys = (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

#endif
