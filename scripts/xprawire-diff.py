#!/usr/bin/python3
"""Peer for the internal/xprawire differential test.

Runs under Debian's /usr/bin/python3 with python3-rencode (1.0.6) and xpra 3.1.3
(xpra.net.bencode). It reads requests from stdin and answers on stdout, one at a
time, until stdin closes:

  request:  op (1 byte) encoding (1 byte) length (4 bytes, big-endian) data
  reply:    status (1 byte: 0 ok, 1 error) length (4 bytes, big-endian) data

ops: 'd' decode data with the encoding and reply with the value as a tag string;
     'e' build the value described by the tag in data, encode it, reply with the bytes.
     'z' zlib-compress data at level <encoding byte>; 'u' zlib-decompress data.
encodings: 'b' xpra bencode, 'r' rencode.

Tags describe a value exactly: N T F, i<decimal>; f<16 hex digits of the IEEE
double>, b<hex>; (bytes), s<hex of utf-8>; (str), [items] and {key value ...}.
"""
import struct
import sys
import zlib

import rencode
from xpra.net.bencode import bencode, bdecode


def tag(v):
    if v is None:
        return "N"
    if v is True:
        return "T"
    if v is False:
        return "F"
    if isinstance(v, int):
        return "i%d;" % v
    if isinstance(v, float):
        return "f" + struct.pack(">d", v).hex()
    if isinstance(v, bytes):
        return "b" + v.hex() + ";"
    if isinstance(v, str):
        return "s" + v.encode("utf8").hex() + ";"
    if isinstance(v, (list, tuple)):
        return "[" + "".join(tag(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + "".join(tag(k) + tag(x) for k, x in v.items()) + "}"
    raise ValueError("unexpected type %s" % type(v))


def parse(s, i):
    c = s[i]
    if c == "N":
        return None, i + 1
    if c == "T":
        return True, i + 1
    if c == "F":
        return False, i + 1
    if c == "i":
        j = s.index(";", i)
        return int(s[i + 1:j]), j + 1
    if c == "f":
        return struct.unpack(">d", bytes.fromhex(s[i + 1:i + 17]))[0], i + 17
    if c in "bs":
        j = s.index(";", i)
        raw = bytes.fromhex(s[i + 1:j])
        return (raw if c == "b" else raw.decode("utf8")), j + 1
    if c == "[":
        out = []
        i += 1
        while s[i] != "]":
            v, i = parse(s, i)
            out.append(v)
        return out, i + 1
    if c == "{":
        out = {}
        i += 1
        while s[i] != "}":
            k, i = parse(s, i)
            v, i = parse(s, i)
            out[k] = v
        return out, i + 1
    raise ValueError("bad tag at %d: %r" % (i, c))


def decode(enc, data):
    if enc == "r":
        return rencode.loads(data)
    v, n = bdecode(data)
    if n != len(data):
        raise ValueError("bdecode consumed %d of %d bytes" % (n, len(data)))
    return v


def encode(enc, v):
    if enc == "r":
        return rencode.dumps(v)
    return bencode(v)


def main():
    rd, wr = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = rd.read(6)
        if len(head) < 6:
            return
        op, enc = chr(head[0]), chr(head[1])
        (n,) = struct.unpack(">I", head[2:])
        data = rd.read(n)
        try:
            if op == "d":
                out = tag(decode(enc, data)).encode("ascii")
            elif op == "e":
                s = data.decode("ascii")
                v, end = parse(s, 0)
                if end != len(s):
                    raise ValueError("trailing tag data")
                out = encode(enc, v)
            elif op == "z":
                out = zlib.compress(data, head[1])
            elif op == "u":
                out = zlib.decompress(data)
            else:
                raise ValueError("unknown op %r" % op)
            status = 0
        except Exception as e:  # reported to the Go side, which decides
            out = ("%s: %s" % (type(e).__name__, e)).encode("utf8", "replace")
            status = 1
        wr.write(bytes([status]) + struct.pack(">I", len(out)) + out)
        wr.flush()


if __name__ == "__main__":
    main()
