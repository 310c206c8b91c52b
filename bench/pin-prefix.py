#!/usr/bin/env python3
"""Prints the first two parts of the names of SYSROOT's pins, KEY.SYSROOT
(imageswitch(8), PINNED NAMESPACES; src/pin.rs NameKey): SipHash-2-4
(Aumasson and Bernstein, 2012) keyed with the 16 bytes of KEYFILE, of a
fixed text (8 hex digits of the high half) and of the sysroot's name.

    bench/pin-prefix.py KEYFILE SYSROOT      (as root: the key is root's)
"""
import sys

MASK = (1 << 64) - 1


def rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & MASK


def siphash24(key: bytes, data: bytes) -> int:
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def sipround():
        v[0] = (v[0] + v[1]) & MASK; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & MASK; v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & MASK; v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & MASK; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)

    whole = len(data) // 8 * 8
    blocks = [int.from_bytes(data[i:i + 8], "little") for i in range(0, whole, 8)]
    blocks.append(((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little"))
    for m in blocks:
        v[3] ^= m
        sipround(); sipround()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# The published test vector: key 00..0f, empty input.
assert siphash24(bytes(range(16)), b"") == 0x726FDB47DD0E0E31

key = open(sys.argv[1], "rb").read()
assert len(key) == 16, "the key is 16 bytes"
print(f"{siphash24(key, b'imageswitch pin names') >> 32:08x}.{siphash24(key, sys.argv[2].encode()):016x}")
