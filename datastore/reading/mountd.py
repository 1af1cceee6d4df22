"""The mount process: ``python -m datastore.reading.mountd '<json args>'`` (started by ``datastore mount``).

It serves one version with :func:`datastore.reading.mount.serve` until unmounted, and reports
to the ``datastore mount`` that started it over an inherited pipe: the pickled
:class:`~datastore.reading.mount.MountInfo` once the mount answers, or the error that kept it
from starting (re-raised there, so the user sees the same one-line message).
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import pickle
import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Serve the mount described by ``argv[0]`` (JSON: record, dir, fd, log)."""
    return run(json.loads(argv[0]))


def run(args: dict) -> int:
    """Serve one mount until it is unmounted; the exit code of the mount process.

    Also called in a child forked by ``datastore mount`` (which has everything imported
    already, so the mount answers ~0.4 s sooner than from a fresh interpreter).
    """
    faulthandler.register(signal.SIGUSR1)  # 'kill -USR1 PID' writes every thread's stack to the log
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s",
                        force=True)
    logging.getLogger("mfusepy").setLevel(logging.WARNING)
    os.environ["DATASTORE_MOUNT_LOG"] = args["log"]
    fd = args["fd"]

    def report(what: object) -> None:
        try:
            os.write(fd, pickle.dumps(what))
        except Exception:  # noqa: BLE001 - an unpicklable error still gets its line through
            os.write(fd, pickle.dumps(RuntimeError(str(what))))
        os.close(fd)

    from datastore.errors import DatastoreError
    from datastore.reading.mount import serve
    from datastore.settings import Settings
    from datastore.store.versions import VersionRecord

    try:
        serve(VersionRecord.from_json(args["record"]), Path(args["dir"]), Settings.from_env(), report=report)
    except DatastoreError as exc:
        logging.getLogger("datastore.mount").error("%s", exc.line())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
