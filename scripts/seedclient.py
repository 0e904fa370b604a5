#!/usr/bin/env python3
"""A client that speaks to sumserver exactly as the 2009 sumclient.py did.

Each request opens a connection, sends a bare decimal n (no newline), reads
once and closes; N threads share 1000 requests. Use it to check that the
seed's wire format still works, and to compare with `sumclient N`:

    python3 scripts/seedclient.py 4 --port 10000
"""
import argparse
import socket
import threading
import time


def one_client(port, count, n, answers):
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
            conn.connect(("127.0.0.1", port))
            conn.send(str(n).encode("ascii"))
            answers.append(conn.recv(128))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clients", type=int, help="client threads")
    parser.add_argument("--port", type=int, default=10000)
    parser.add_argument("--n", type=int, default=25000)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    per_client = args.requests // args.clients
    answers = []
    threads = [
        threading.Thread(target=one_client, args=(args.port, per_client, args.n, answers))
        for _ in range(args.clients)
    ]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    print("%d total requests" % (args.clients * per_client))
    print(elapsed)
    expected = str(args.n * (args.n + 1) // 2).encode("ascii")
    wrong = [a for a in answers if a != expected]
    if wrong:
        raise SystemExit("%d wrong answers, first: %r" % (len(wrong), wrong[0]))


if __name__ == "__main__":
    main()
