"""Raw HTTP/1.1 for the hostile-client tests: send exact bytes on one
socket and parse what comes back strictly, so that a test can tell a
well-formed answer from a desynchronised stream. Written here from RFC 9112
(status line, header fields, Content-Length or chunked bodies); it does not
share code with tandem or with any HTTP library."""
import re
import socket
import time

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


class Malformed(Exception):
    pass


# Bytes a server sent after a response that said "Connection: close": a
# client must ignore them (RFC 9112 section 9.6). libmicrohttpd 0.9.75
# sends its own 400 for a bad Content-Length with the status line and
# headers twice; the first response is complete and the connection closes.
after_close = []


def parse_responses(data, head=False):
    """Splits DATA into responses [(status, {name: value}, body)]; raises
    Malformed for bytes that are not a complete, well-formed response
    (a trailing incomplete response included). Bytes after a response
    with "Connection: close" are not parsed; they go to after_close.
    HEAD: the first final (not 1xx) response answers a HEAD request, so
    it has no body."""
    out = []
    pos = 0
    while pos < len(data):
        if out and out[-1][1].get("connection", "").lower() == "close":
            after_close.append(data[pos:pos + 200])
            break
        m = STATUS_LINE.match(data, pos)
        if not m:
            raise Malformed("not a status line at byte %d: %r"
                            % (pos, data[pos:pos + 60]))
        status = int(m.group(1))
        end = data.find(b"\r\n\r\n", m.end() - 2)
        if end < 0:
            raise Malformed("headers never end: %r" % data[pos:pos + 200])
        headers = {}
        for line in data[m.end():end].split(b"\r\n"):
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep or not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise Malformed("bad header line %r" % line)
            key = name.decode().lower()
            if key in headers and key == "content-length":
                raise Malformed("two Content-Length in a response")
            headers[key] = value.strip().decode("latin-1")
        pos = end + 4
        if head and status >= 200 and not any(r[0] >= 200 for r in out):
            out.append((status, headers, b""))
            continue
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    raise Malformed("chunk size never ends")
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    if data[pos:pos + 2] != b"\r\n":
                        raise Malformed("bad last chunk")
                    pos += 2
                    break
                if len(data) < pos + size + 2 or data[pos + size:pos + size + 2] != b"\r\n":
                    raise Malformed("chunk shorter than its size")
                body += data[pos:pos + size]
                pos += size + 2
        else:
            length = headers.get("content-length")
            if length is None or not length.isdigit():
                if status in (204, 304) or 100 <= status < 200:
                    length = "0"
                else:
                    raise Malformed("response without a length: %r" % headers)
            n = int(length)
            if len(data) < pos + n:
                raise Malformed("body shorter than its Content-Length")
            body = data[pos:pos + n]
            pos += n
        out.append((status, headers, body))
    return out


def exchange(host, port, payload, wait=5.0, expect=None):
    """Sends PAYLOAD (bytes) on a fresh connection and reads until the
    server closes, EXPECT responses are complete, or WAIT seconds pass.
    Returns (responses, closed, raw): closed is True when the server
    closed (or reset) the connection. Raises Malformed for a bad answer."""
    s = socket.create_connection((host, port), timeout=wait)
    data = b""
    closed = False
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if expect is not None:
                try:
                    if len(parse_responses(data)) >= expect:
                        break
                except Malformed:
                    pass
    finally:
        s.close()
    return parse_responses(data), closed, data


def request(method, path, body=b"", headers=(), length=True):
    """One request's bytes: a Host header, HEADERS (strings), and
    Content-Length when LENGTH and the method sends a body."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: t"] + list(headers)
    if length and method in ("POST", "PUT"):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
