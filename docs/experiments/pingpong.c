// A round trip between two processes, two ways: a SOCK_SEQPACKET socket
// pair (what `procs` uses: sendmsg/recvmsg, each side sleeping in recv),
// and a word in shared memory with a futex to sleep on (each side sleeping
// in FUTEX_WAIT). Issue 15, fifth pass: what a transport without sockets
// could save. Pin both processes to one core, or the figure is the time a
// halted vCPU takes to wake:
//
//     cc -O2 -o /tmp/pingpong docs/experiments/pingpong.c
//     taskset -c 0 /tmp/pingpong socket 200000
//     taskset -c 0 /tmp/pingpong futex 200000
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, JOB, ANSWER, QUIT };

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// Shared between processes: no FUTEX_PRIVATE_FLAG.
static void futex(atomic_uint *word, int op, unsigned value) {
    syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static double over_socket(int rounds) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) != 0) exit(1);
    if (fork() == 0) {
        char message[64];
        close(pair[0]);
        for (;;) {
            ssize_t n = recv(pair[1], message, sizeof message, 0);
            if (n <= 0) _exit(0);
            send(pair[1], message, (size_t)n, 0);
        }
    }
    close(pair[1]);
    char message[64] = "sumn 1";
    double start = seconds();
    for (int i = 0; i < rounds; i++) {
        send(pair[0], message, 16, 0);
        recv(pair[0], message, sizeof message, 0);
    }
    double took = seconds() - start;
    close(pair[0]);
    wait(NULL);
    return took;
}

static double over_futex(int rounds) {
    atomic_uint *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (word == MAP_FAILED) exit(1);
    if (fork() == 0) {
        for (;;) {
            unsigned seen = atomic_load(word);
            if (seen == QUIT) _exit(0);
            if (seen == JOB) {
                atomic_store(word, ANSWER);
                futex(word, FUTEX_WAKE, 1);
                continue;
            }
            futex(word, FUTEX_WAIT, seen);
        }
    }
    double start = seconds();
    for (int i = 0; i < rounds; i++) {
        atomic_store(word, JOB);
        futex(word, FUTEX_WAKE, 1);
        unsigned seen;
        while ((seen = atomic_load(word)) != ANSWER) futex(word, FUTEX_WAIT, seen);
    }
    double took = seconds() - start;
    atomic_store(word, QUIT);
    futex(word, FUTEX_WAKE, 1);
    wait(NULL);
    return took;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "socket") && strcmp(argv[1], "futex"))) {
        fprintf(stderr, "usage: %s socket|futex ROUNDS\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[2]);
    double took = strcmp(argv[1], "socket") == 0 ? over_socket(rounds) : over_futex(rounds);
    printf("%s: %.2f us per round trip\n", argv[1], took / rounds * 1e6);
    return 0;
}
