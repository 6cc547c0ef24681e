/* Benchmark launcher: runs argv[1..] and prints its CPU seconds and peak
 * RSS from wait4(2). Linux counts the pre-exec memory of a forked child in
 * ru_maxrss, so launching from Python would report Python's size; this tiny
 * static program keeps that baseline far below what is measured.
 * Prints: "<user+sys seconds> <maxrss KiB> <wall seconds>" on stderr; exits with the child's status. */
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) return 2;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "%.6f %ld %.6f\n",
            ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
            ru.ru_maxrss, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
