"""The listener's limits against the real floodgated: slow heads and bodies and idle kept-alive
connections are cut off at their timeouts, connections over --max-connections are refused with
503 while the open ones keep working. Each test sets short limits and waits for the close or the
answer (socket timeouts only bound a failure)."""

from __future__ import annotations

import socket
import time

from harness import raw_request, wait_until


def connect(fg) -> socket.socket:
    return socket.create_connection(("127.0.0.1", fg.port), timeout=10)


def closed_after(s: socket.socket, dribble: bytes = b"", every: float = 0.05) -> float:
    """Sends `dribble` a byte every `every` seconds until the server ends the connection;
    returns the seconds that took (the socket's timeout bounds it)."""
    started = time.monotonic()
    s.settimeout(every if dribble else 10)
    for i in range(len(dribble) + 1):
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if i < len(dribble):
            try:
                s.sendall(dribble[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
    raise AssertionError("the connection stayed open")


def healthy(fg) -> None:
    assert raw_request(fg.client.base, "GET", "/healthz").status == 200


def test_slowloris_head_is_cut_off_at_the_header_timeout(start_floodgated, fake):
    fg = start_floodgated("--header-timeout", "0.5")
    with connect(fg) as s:
        took = closed_after(s, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X" * 400)
    assert 0.45 <= took < 5, took
    with connect(fg) as silent:  # connects and sends nothing
        took = closed_after(silent)
    assert 0.45 <= took < 5, took
    healthy(fg)


def test_slow_body_is_cut_off_at_the_body_timeout(start_floodgated, fake):
    fg = start_floodgated("--body-timeout", "0.5")
    with connect(fg) as s:
        s.sendall(b"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 400\r\n\r\n")
        took = closed_after(s, b" " * 400)
    assert 0.45 <= took < 5, took
    assert fake.stats()["runs"] == 0
    healthy(fg)


def test_idle_kept_alive_connection_is_closed_at_the_idle_timeout(start_floodgated, fake):
    fg = start_floodgated("--idle-timeout", "0.5")
    with connect(fg) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        took = closed_after(s)
    assert 0.4 <= took < 5, took


def test_connections_over_the_cap_get_503_and_the_rest_are_served(start_floodgated, fake):
    fg = start_floodgated("--max-connections", "4")
    # The harness's health-check connection may still count until the server sees it close:
    # a 503 here means "not yet", so try again.
    held = []
    deadline = time.monotonic() + 10
    while len(held) < 4:
        assert time.monotonic() < deadline, len(held)
        s = connect(fg)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        if s.recv(4096).startswith(b"HTTP/1.1 200"):
            held.append(s)
        else:
            s.close()
            time.sleep(0.02)
    refused = 0
    for _ in range(20):
        with connect(fg) as extra:
            answer = b""
            try:
                while True:
                    chunk = extra.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            except ConnectionResetError:
                pass
            if answer.startswith(b"HTTP/1.1 503") and b"--max-connections" in answer:
                refused += 1
    assert refused == 20, refused
    # The held connections are still served, and once they close new ones are too.
    for s in held:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.close()
    def served() -> bool:
        try:
            return raw_request(fg.client.base, "GET", "/healthz").status == 200
        except (ConnectionError, OSError):
            return False

    wait_until(served, 10)
    assert "connection limit reached" in fg.log_path.read_text()
