#!/usr/bin/env python3
"""The peer of the backup benchmark: a pipelined redis-py exporter (SCAN, then GET + PTTL per key
in pipelines of 1000, JSON lines to a file), the way teams write a key-level export by hand.

Usage: redis_py_export.py HOST PORT OUT_FILE   (prints the number of keys exported)
Needs: python3 -m pip install redis
"""
import base64
import json
import sys

try:
    import redis
except ImportError:
    sys.exit("redis_py_export.py: the Python package 'redis' is missing: python3 -m pip install redis")


def main() -> None:
    host, port, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = redis.Redis(host=host, port=port)
    exported = 0
    with open(out_path, "w", encoding="ascii") as out:
        batch = []
        for key in client.scan_iter(count=1000):
            batch.append(key)
            if len(batch) == 1000:
                exported += flush(client, batch, out)
                batch = []
        exported += flush(client, batch, out)
    print(exported)


def flush(client, keys, out) -> int:
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    for i, key in enumerate(keys):
        value, ttl = replies[2 * i], replies[2 * i + 1]
        if value is None:
            continue
        out.write(json.dumps({
            "k": base64.b64encode(key).decode(),
            "v": base64.b64encode(value).decode(),
            "pttl": ttl,
        }))
        out.write("\n")
    return len(keys)


if __name__ == "__main__":
    main()
