"""A request's body, read up to the service's upload limit (``ADF_MAX_UPLOAD_BYTES``) and no further.

A declared length over the limit is refused before a byte is read; a body sent without one (chunked)
is read as it comes and refused as soon as it passes the limit, so that no request holds more than the
limit in the server's memory.
"""

from __future__ import annotations

from fastapi import Request

from api.problems import Problem

__all__ = ["read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or a 413 Problem naming its size and the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the body has {int(declared):,} bytes, more than the limit of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body has over {limit:,} bytes, more than the limit of {limit:,} (it came "
                               f"without its length and was refused once {size:,} bytes were read)")
        chunks.append(chunk)
    return b"".join(chunks)
