#!/usr/bin/env python3
"""The real Lamed backend (PyPI lamed==0.4.3) as a benchmark peer: calls its own `track` in-process,
once per event, against one Redis, and prints one JSON line: events, seconds, cpu_seconds.

Lamed reads `config.json` from the working directory and puts `./vendor` first on sys.path (the
redis-py 3.x it ships for AWS Lambda), so this script runs from a scratch directory holding both.
Events have the benchmark's shape: 20 experiments, two variants, `participate`, a unique uuid each
(so every call takes Lamed's full path: SADD x3, then WATCH/GET/MULTI/SETEX/INCR/EXEC).

usage: lamed_track.py LAMED_DIR HOST PORT EVENTS [RUN]
  prints also which redis-py Lamed ran with (its vendored one)
  LAMED_DIR: where `pip install --no-deps --target` put lamed (the directory holding lamed/)
"""
import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
import time


def main():
    lamed_dir, host, port, events = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    run = sys.argv[5] if len(sys.argv) > 5 else "lamed"
    scratch = tempfile.mkdtemp(prefix="lamed-bench-")
    atexit.register(shutil.rmtree, scratch, True)
    with open(os.path.join(scratch, "config.json"), "w") as f:
        json.dump({"redis": {"host": host, "port": port}}, f)
    os.symlink(os.path.join(lamed_dir, "lamed", "vendor"), os.path.join(scratch, "vendor"))
    os.chdir(scratch)
    sys.path.insert(0, lamed_dir)
    from lamed import lamed  # noqa: E402  (reads config.json from the working directory)

    # Lamed logs two INFO lines per event; a deployment would turn that down, and the peer should
    # be measured at its best, so only warnings are logged.
    lamed.logger.setLevel(logging.WARNING)

    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(events):
        lamed.track(
            {
                "namespace": "alephbet",
                "experiment": "flag-%d" % (i % 20),
                "variant": "control" if i % 2 == 0 else "treatment",
                "event": "participate",
                "uuid": "%s-%d" % (run, i),
            },
            None,
        )
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    redis = sys.modules["redis"]
    print(
        json.dumps(
            {
                "events": events,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "redis_py": "%s from %s" % (redis.__version__, os.path.dirname(redis.__file__)),
            }
        )
    )


if __name__ == "__main__":
    main()
