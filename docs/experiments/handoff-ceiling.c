// The most a server can do when every request makes a round trip to another
// process, on this machine: a thread per connection answering `1` to every
// line (the answer to `sumn 1`), after a round trip to an echo process of
// the connection's own. Issue 15, sixth pass: is `procs ≥ 0.5 × inline`
// within reach of any design that hands each job to a process that sleeps
// while it has none?
//
//   bare    no round trip: what `inline` is held to
//   socket  a SOCK_SEQPACKET pair per connection (what `procs` uses)
//   futex   a word in shared memory per connection, each side sleeping in
//           FUTEX_WAIT and woken only when it sleeps: no socket at all
//   spin    the futex, but each side first spins up to SPIN_NS for the other
//           before it sleeps
//   pool    the futex, but with one echo per core (2) shared by every
//           connection, as `procs` shares its workers: connection i is
//           served by echo i % 2, which answers every job posted to it
//           before it sleeps again, so a busy echo takes the next job with
//           no system call, and a doorbell word wakes it only when it sleeps
//
// Every echo is forked before the first thread starts. sumclient drives it
// like a sumserver (`--addr` last, as scripts/compare passes it):
//
//     cc -O2 -pthread -o /tmp/handoff docs/experiments/handoff-ceiling.c
//     scripts/compare --rounds 5 'inline=target/release/sumserver'
//         'bare=/tmp/handoff bare' 'socket=/tmp/handoff socket'
//         'futex=/tmp/handoff futex' 'pool=/tmp/handoff pool'
//         'procs=target/release/sumserver --apply procs'
//
// (one command: the servers are its arguments). SIGTERM stops it, and its
// echoes die with it (PR_SET_PDEATHSIG).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CONNECTIONS = 16 };
enum { IDLE, JOB, ANSWER };
enum { BARE, SOCKET, FUTEX, SPIN, POOL } mode;
enum { POOL_ECHOES = 2 };
static const long SPIN_NS = 20000;

// One per connection, in memory shared with its echo. `sleeping[side]` says
// that side (SERVER or ECHO) waits in FUTEX_WAIT, so that a wake is only sent
// to a sleeper.
enum { SERVER, ECHO };
struct line {
    atomic_uint state;
    atomic_uint sleeping[2];
    char pad[52];
};
static struct line *lines;
// POOL: one per echo. `ring` counts the jobs posted to it (the word it
// sleeps on), `sleeping` says it sleeps.
struct bell {
    atomic_uint ring;
    atomic_uint sleeping;
    char pad[56];
};
static struct bell *bells;
static int sockets[MAX_CONNECTIONS][2];

static void futex(atomic_uint *word, int op, unsigned value) {
    syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

// Waits until `line->state` is `want`, spinning first in SPIN mode.
static void await(struct line *line, unsigned want, int side) {
    if (mode == SPIN) {
        long until = now_ns() + SPIN_NS;
        while (now_ns() < until)
            for (int i = 0; i < 64; i++)
                if (atomic_load(&line->state) == want) return;
    }
    for (;;) {
        atomic_store(&line->sleeping[side], 1);
        unsigned seen = atomic_load(&line->state);
        if (seen == want) {
            atomic_store(&line->sleeping[side], 0);
            return;
        }
        futex(&line->state, FUTEX_WAIT, seen);
    }
}

static void post(struct line *line, unsigned state, int to) {
    atomic_store(&line->state, state);
    if (atomic_exchange(&line->sleeping[to], 0)) futex(&line->state, FUTEX_WAKE, 1);
}

// Whether any connection of echo `e` has a job posted; answers them all.
static int answer_all(int e) {
    int found = 0;
    for (int i = e; i < MAX_CONNECTIONS; i += POOL_ECHOES)
        if (atomic_load(&lines[i].state) == JOB) {
            post(&lines[i], ANSWER, SERVER);
            found = 1;
        }
    return found;
}

static void pooled_echo(int e) {
    struct bell *bell = &bells[e];
    for (;;) {
        if (answer_all(e)) continue;
        atomic_store(&bell->sleeping, 1);
        unsigned seen = atomic_load(&bell->ring);
        if (answer_all(e)) {
            atomic_store(&bell->sleeping, 0);
            continue;
        }
        futex(&bell->ring, FUTEX_WAIT, seen);
    }
}

static void echo(int index) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (mode == POOL) pooled_echo(index);
    char message[64];
    for (;;) {
        if (mode == SOCKET) {
            ssize_t n = recv(sockets[index][1], message, sizeof message, 0);
            if (n <= 0) _exit(0);
            send(sockets[index][1], message, (size_t)n, 0);
        } else {
            await(&lines[index], JOB, ECHO);
            post(&lines[index], ANSWER, SERVER);
        }
    }
}

static void round_trip(int index) {
    if (mode == SOCKET) {
        char message[64] = "sumn 1 ........";
        send(sockets[index][0], message, 16, 0);
        recv(sockets[index][0], message, sizeof message, 0);
    } else if (mode == POOL) {
        struct bell *bell = &bells[index % POOL_ECHOES];
        atomic_store(&lines[index].state, JOB);
        atomic_fetch_add(&bell->ring, 1);
        if (atomic_exchange(&bell->sleeping, 0)) futex(&bell->ring, FUTEX_WAKE, 1);
        await(&lines[index], ANSWER, SERVER);
        atomic_store(&lines[index].state, IDLE);
    } else if (mode != BARE) {
        post(&lines[index], JOB, ECHO);
        await(&lines[index], ANSWER, SERVER);
        atomic_store(&lines[index].state, IDLE);
    }
}

static void *connection(void *arg) {
    long fd_index = (long)arg;
    int fd = (int)(fd_index >> 8), index = (int)(fd_index & 0xff);
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        if (n <= 0) break;
        have += (size_t)n;
        char *start = buf, *end;
        while ((end = memchr(start, '\n', have - (size_t)(start - buf)))) {
            round_trip(index);
            // sumclient ends a connection with `sumn 2`, whose answer no
            // other request of the run has.
            int sentinel = end - start == 6 && !memcmp(start, "sumn 2", 6);
            send(fd, sentinel ? "3\n" : "1\n", 2, 0);
            start = end + 1;
        }
        have -= (size_t)(start - buf);
        memmove(buf, start, have);
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[2], "--addr")) {
        fprintf(stderr, "usage: %s bare|socket|futex|spin|pool --addr 127.0.0.1:PORT\n",
                argv[0]);
        return 2;
    }
    mode = !strcmp(argv[1], "bare")     ? BARE
           : !strcmp(argv[1], "socket") ? SOCKET
           : !strcmp(argv[1], "futex")  ? FUTEX
           : !strcmp(argv[1], "spin")   ? SPIN
           : !strcmp(argv[1], "pool")   ? POOL
                                        : -1;
    if ((int)mode < 0) return 2;
    lines = mmap(NULL, sizeof(struct line) * MAX_CONNECTIONS, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    bells = mmap(NULL, sizeof(struct bell) * POOL_ECHOES, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (lines == MAP_FAILED || bells == MAP_FAILED) return 1;
    int echoes = mode == BARE ? 0 : mode == POOL ? POOL_ECHOES : MAX_CONNECTIONS;
    for (int i = 0; i < echoes; i++) {
        if (mode == SOCKET && socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sockets[i])) return 1;
        if (fork() == 0) echo(i);
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    char *colon = strrchr(argv[3], ':');
    addr.sin_port = htons((unsigned short)atoi(colon + 1));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 128)) return 1;
    for (long index = 0;; index++) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t thread;
        long arg = ((long)fd << 8) | (index % MAX_CONNECTIONS);
        pthread_create(&thread, NULL, connection, (void *)arg);
        pthread_detach(thread);
    }
}
