#!/usr/bin/env python3
"""Replays an event stream into the real Lamed (PyPI lamed==0.4.3) and prints what its own
`experiment` and `all` answer, for tests/tests/api_lamed.rs: the tracking API must answer the same.

usage: lamed_compat.py LAMED_DIR HOST PORT EVENTS_JSON NAMESPACE [MODULE]
  MODULE: lamed (default) or gimel (then LAMED_DIR is where gimel is installed: the same API,
  with unique HyperLogLog counts)
  EVENTS_JSON: a file with a JSON list of Lamed `track` events
  ({"experiment", "variant", "event", "uuid", "namespace"}).
  prints {"experiments": {<name>: experiment()}, "all": all(), "all_scoped": all(scope=first two),
          "deleted": <the last experiment>, "all_after_delete": all() after delete() of it}

Lamed reads `config.json` from the working directory and puts `./vendor` first on sys.path (the
redis-py it ships), so this runs from a scratch directory holding both, as scripts/bench/lamed_track.py.
"""
import atexit
import json
import logging
import os
import shutil
import sys
import tempfile


def main():
    lamed_dir, host, port, events_file, namespace = (
        sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    module = sys.argv[6] if len(sys.argv) > 6 else "lamed"
    with open(events_file) as f:
        events = json.load(f)
    scratch = tempfile.mkdtemp(prefix="lamed-compat-")
    atexit.register(shutil.rmtree, scratch, True)
    with open(os.path.join(scratch, "config.json"), "w") as f:
        json.dump({"redis": {"host": host, "port": port}}, f)
    os.symlink(os.path.join(lamed_dir, module, "vendor"), os.path.join(scratch, "vendor"))
    os.chdir(scratch)
    sys.path.insert(0, lamed_dir)
    import importlib  # noqa: E402
    # Reads config.json from the working directory.
    lamed = importlib.import_module("{0}.{0}".format(module))

    if hasattr(lamed, "logger"):
        lamed.logger.setLevel(logging.WARNING)
    for event in events:
        lamed.track(event, None)
    names = sorted({e["experiment"] for e in events})
    out = {
        "experiments": {
            name: lamed.experiment({"experiment": name, "namespace": namespace}, None)
            for name in names
        },
        "all": lamed.all({"namespace": namespace}, None),
        "all_scoped": lamed.all({"namespace": namespace, "scope": ",".join(names[:2])}, None),
    }
    # Lamed's delete of the last experiment, and what `all` says then.
    lamed.delete({"experiment": names[-1], "namespace": namespace}, None)
    out["deleted"] = names[-1]
    out["all_after_delete"] = lamed.all({"namespace": namespace}, None)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
