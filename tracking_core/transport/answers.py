"""Reading an answer: at most `MAX_ANSWER_BYTES` of its body, decoded (gzip, deflate)."""

from __future__ import annotations

import zlib

import httpx

__all__ = ["MAX_ANSWER_BYTES", "MAX_RAW_ANSWER_BYTES", "read_answer"]

#: The most of an answer's body that is read, in decoded bytes. A provider only needs the start
#: of an answer (a status, an error message, the ids of refused events); the rest is not read,
#: not decompressed, and its connection is closed. The status of a cut answer still counts.
MAX_ANSWER_BYTES = 64 * 1024

#: A compressed answer is also cut after this many bytes as received (its decoded size may stay
#: under the cap while the server sends on and on).
MAX_RAW_ANSWER_BYTES = 4 * MAX_ANSWER_BYTES


class _Inflate:
    """gzip / zlib / raw-deflate decoding with a bound on each call's output."""

    def __init__(self, *, raw_fallback: bool) -> None:
        self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        self._fallback = raw_fallback
        self._started = False

    @property
    def eof(self) -> bool:
        return self._decoder.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._decoder.decompress(data, max_length)
        except zlib.error:
            if not self._fallback or self._started:
                raise
            # "deflate" sent without its zlib header, as some servers do.
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            self._fallback = False
            out = self._decoder.decompress(data, max_length)
        self._started = True
        return out


def _decoder(content_encoding: str) -> _Inflate | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _Inflate(raw_fallback=False)
    if encoding == "deflate":
        return _Inflate(raw_fallback=True)
    return None  # identity; or an encoding not decoded here (br, zstd, several): kept as sent


def read_answer(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> tuple[bytes, bool]:
    """At most `limit` bytes of `response`'s body, decoded (gzip, deflate), and whether the
    answer was longer (cut).

    The body is streamed: nothing past `limit` decoded bytes is kept or decompressed, and a
    compressed body is also cut after `MAX_RAW_ANSWER_BYTES` received. The caller closes the
    response; one that was cut is then closed rather than kept alive. A body that does not
    decode keeps what decoded before the error.
    """
    encoding = response.headers.get("content-encoding")
    decoder = _decoder(encoding) if encoding else None
    parts: list[bytes] = []
    size = 0
    received = 0
    cut = False
    stream = response.stream
    if not isinstance(stream, httpx.SyncByteStream):
        raise TypeError("read_answer needs a response from a synchronous transport")
    for chunk in stream:
        if decoder is None:
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                cut = True
                break
            continue
        received += len(chunk)
        if received > MAX_RAW_ANSWER_BYTES:
            cut = True
            break
        if decoder.eof:
            continue  # trailing bytes after the compressed stream: read, not kept
        try:
            data = decoder.decompress(chunk, limit + 1 - size)
        except zlib.error:
            break  # not what it says it is: keep what decoded, close the connection
        parts.append(data)
        size += len(data)
        if size > limit:
            cut = True
            break
    body = b"".join(parts) if len(parts) != 1 else parts[0]
    if cut:
        body = body[:limit]
    return body, cut
