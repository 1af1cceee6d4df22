"""One exception hierarchy for the whole project.

Every error a user can cause or meet is a :class:`DatastoreError`. Each subclass also inherits
the builtin exception that fits (``FileNotFoundError``, ``PermissionError`` …) so callers that
think in builtins still catch them. Each carries the arguments it was built from (like dlt's
exceptions) and renders as one line that says what is wrong *and* what to do about it.

Errors from boto3/botocore and from HTTP libraries are translated into this hierarchy at one
boundary (:mod:`datastore.s3`); nothing above that boundary sees a ``ClientError``.
"""

from __future__ import annotations

from pathlib import Path


class DatastoreError(Exception):
    """Root of every error the project raises on purpose.

    Attributes:
        message: What went wrong.
        hint: What the user can do about it.
        transient: True when retrying the same operation may succeed (network, throttling).
    """

    transient: bool = False

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        Exception.__init__(self, self.line())

    def line(self) -> str:
        """The one-line rendering shown to users: problem, then the fix."""
        return f"{self.message}: {self.hint}" if self.hint else self.message

    def __str__(self) -> str:  # OSError subclasses would otherwise render errno tuples
        return self.line()

    def __reduce__(self):  # keep pickling (Prefect state serialization) working for subclasses
        return (_rebuild, (type(self), self.__dict__))


def one_line(exc: BaseException) -> str:
    """Any exception as the single line users see (project errors: problem, then the fix)."""
    if isinstance(exc, DatastoreError):
        return exc.line()
    return " ".join(str(exc).split()) or type(exc).__name__


def _rebuild(cls: type[DatastoreError], state: dict) -> DatastoreError:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    Exception.__init__(obj, obj.line())
    return obj


class TransientError(DatastoreError):
    """A failure that may go away on retry (timeouts, throttling, 5xx)."""

    transient = True


# --- user input -------------------------------------------------------------------------------


class UsageError(DatastoreError, ValueError):
    """A command or call was given options that do not go together, or a value it cannot use."""


class ConfigError(DatastoreError, ValueError):
    """A setting (a ``DATASTORE_*`` variable or a :class:`~datastore.settings.Settings` field) is invalid.

    Attributes:
        setting: The variable or field name.
        value: The value given.
    """

    def __init__(self, setting: str, value: object, problem: str, hint: str) -> None:
        self.setting = setting
        self.value = value
        super().__init__(f"{setting}={value!r} {problem}", hint)


class MismatchedAnswer(TransientError):
    """An S3 answer that does not belong to the request (another range, object or length).

    What a connection shared across a ``fork`` produces; never returned as data. Transient: the
    same request on a connection of this process's own gets the right answer.
    """

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"S3 answered a request for {what!r} with {detail}",
                         "the answer was discarded; the read is retried on a new connection")


class InvalidName(DatastoreError, ValueError):
    """An explicit datastore name breaks the naming rule, or none can be derived.

    Args:
        name: The name given, or the source component a name was derived from.
        rule: What to do (the rule, or the ``--name`` to pass).
        message: What is wrong, when not "invalid datastore name NAME" (a derived name too long).
    """

    def __init__(self, name: str, rule: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"invalid datastore name {name!r}", rule)


class InvalidSource(DatastoreError, ValueError):
    """A SOURCE argument that cannot be understood."""

    def __init__(self, source: str, reason: str, hint: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"invalid source {source!r}: {reason}", hint)


class NotSupportedYet(DatastoreError, NotImplementedError):
    """A valid request this version of the project cannot serve yet."""

    def __init__(self, what: str, hint: str) -> None:
        self.what = what
        super().__init__(f"{what} is not supported yet", hint)


class SourceNotFound(DatastoreError, FileNotFoundError):
    """The source path, bucket or object does not exist."""

    def __init__(self, source: str, hint: str = "check the path (it is resolved from the current directory)") -> None:
        self.source = source
        super().__init__(f"source {source!r} does not exist", hint)


class EmptySource(DatastoreError, ValueError):
    """The source holds no file that could be stored."""

    def __init__(self, source: str, skipped: int = 0, hint: str = "add files to it or choose another source") -> None:
        self.source = source
        self.skipped = skipped
        extra = f" ({skipped} entries skipped: symlinks to folders, broken links or special files)" if skipped else ""
        super().__init__(f"source {source!r} contains no files{extra}", hint)


class SourceUnreadable(DatastoreError, PermissionError):
    """A file or folder of the source (or the source folder itself) cannot be read.

    Args:
        path: Relative to the source; the source as given when ``root``.
        reason: Why (``permission denied``).
        folder: A folder that cannot be listed, not a file that cannot be read.
        root: The source folder itself.
    """

    def __init__(self, path: str, reason: str, folder: bool = False, root: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.folder = folder
        self.root = root
        what = "folder" if folder or root else "file"
        fix = "chmod +rx" if folder or root else "chmod +r"
        super().__init__(
            f"cannot read source {what} {path!r} ({reason})",
            f"fix its permissions ({fix}) or "
            + ("choose another source" if root else "move it out of the source folder"),
        )


class SourceChanged(DatastoreError, RuntimeError):
    """A source file or object changed while it was being read."""

    def __init__(self, path: str, detail: str,
                 hint: str = "stop whatever writes to it and run the same create again (finished batches are reused)") -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"source file {path!r} changed while it was being read ({detail})", hint)


class SourceAccessDenied(DatastoreError, PermissionError):
    """The source bucket refused the credentials or the request."""

    def __init__(self, location: str, reason: str, hint: str = "") -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"access to source {location!r} was denied ({reason})",
            hint or "pass --credentials BLOCK naming a Prefect AwsCredentials block that may read it, "
            "or grant the default AWS credentials s3:ListBucket and s3:GetObject on it",
        )


class CredentialsNotFound(DatastoreError, LookupError):
    """``--credentials`` names no AwsCredentials block."""

    def __init__(self, block: str, reason: str = "no such block") -> None:
        self.block = block
        self.reason = reason
        super().__init__(
            f"AwsCredentials block {block!r} cannot be loaded ({reason})",
            "create it (prefect-aws: AwsCredentials(...).save(NAME)) or pick one from 'prefect block ls'",
        )


class ReferenceBroken(DatastoreError, FileNotFoundError):
    """A no-copy version's pinned S3 object is gone or holds different bytes."""

    def __init__(self, path: str, name: str, version: int, location: str, reason: str) -> None:
        self.path = path
        self.name = name
        self.version = version
        self.location = location
        self.reason = reason
        super().__init__(
            f"file {path!r} of {name} version {version} cannot be read: its pinned object {location} {reason}",
            "the source no longer holds the pinned bytes; restore the object or create a new version "
            "from the current prefix",
        )


class UrlRefused(DatastoreError, ValueError):
    """A URL the HTTP source may not fetch (scheme, credentials, or an address it must not reach)."""

    def __init__(self, url: str, reason: str, hint: str) -> None:
        self.url = url  # already credential-free: callers pass the redacted form
        self.reason = reason
        super().__init__(f"refusing to fetch {url!r}: {reason}", hint)


class DownloadFailed(DatastoreError, ConnectionError):
    """The HTTP download did not succeed (status, network, or a size that does not add up)."""

    def __init__(self, url: str, reason: str, hint: str = "check the URL in a browser and run the same create again",
                 transient: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.transient = transient
        super().__init__(f"downloading {url!r} failed: {reason}", hint)


class ArchiveInvalid(DatastoreError, ValueError):
    """The downloaded bytes are not a supported, intact archive."""

    def __init__(self, source: str, reason: str,
                 hint: str = "point at a .zip, .tar.gz, .tgz or .tar file (the URL's bytes decide the format)") -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source!r} is not a usable archive: {reason}", hint)


class UnsafeArchive(DatastoreError, ValueError):
    """A member of an archive breaks a safety rule; nothing of the archive is stored."""

    def __init__(self, member: str, rule: str,
                 hint: str = "the archive was refused as a whole and nothing was stored; fix or rebuild the archive") -> None:
        self.member = member
        self.rule = rule
        super().__init__(f"archive member {member!r} refused: {rule}", hint)


class QuotaExceeded(DatastoreError):
    """Creating one more version would exceed DATASTORE_MAX_VERSIONS."""

    def __init__(self, live: int, limit: int) -> None:
        self.live = live
        self.limit = limit
        super().__init__(
            f"quota reached: {live} live versions exist and the limit is {limit}",
            "delete versions you no longer need (datastore delete --name NAME --version N) "
            "or raise DATASTORE_MAX_VERSIONS",
        )


class DatastoreNotFound(DatastoreError, LookupError):
    """No such datastore name or version."""

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"datastore {name!r}" + (f" version {version}" if version is not None else "")
        super().__init__(f"{what} does not exist", "run 'datastore list' to see what exists")


class PathNotInVersion(DatastoreError, LookupError):
    """A path asked for inside a version (``ls``, ``cat``, ``du``) that the version does not have."""

    def __init__(self, name: str, version: int, path: str) -> None:
        self.name = name
        self.version = version
        self.path = path
        super().__init__(f"datastore {name!r} version {version} has no file or folder {path!r}",
                         f"'datastore ls {name}@{version}' lists its top level")


class NotAFile(DatastoreError, IsADirectoryError):
    """``cat`` of a folder."""

    def __init__(self, name: str, version: int, path: str) -> None:
        self.name = name
        self.version = version
        self.path = path
        super().__init__(f"{path!r} is a folder in datastore {name!r} version {version}, not a file",
                         f"'datastore ls {name}@{version} {path}' lists it")


class AlreadyDeleted(DatastoreError, LookupError):
    """The version asked for was deleted before."""

    def __init__(self, name: str, version: int, deleted_at: str | None) -> None:
        self.name = name
        self.version = version
        self.deleted_at = deleted_at
        super().__init__(f"datastore {name!r} version {version} was already deleted (at {deleted_at})",
                         "nothing to do; 'datastore list' shows the live versions")


class VersionDeleted(DatastoreNotFound):
    """The version asked to be read (verify, download, mount) was deleted: a :class:`DatastoreNotFound`."""

    def __init__(self, name: str, version: int, deleted_at: str | None) -> None:
        self.deleted_at = deleted_at
        DatastoreError.__init__(self, f"datastore {name!r} version {version} was deleted (at {deleted_at})",
                                f"its files are gone; 'datastore list {name}' shows the live versions")
        self.name = name
        self.version = version


class DeletedWhileReading(VersionDeleted, FileNotFoundError):
    """A store object of a version is gone because the version was deleted (and collected) while
    it was being read without a lease (``datastore://``); a ``FileNotFoundError`` for fsspec callers."""

    def __init__(self, name: str, version: int, deleted_at: str | None) -> None:
        VersionDeleted.__init__(self, name, version, deleted_at)
        when = f" at {deleted_at}" if deleted_at else ""
        DatastoreError.__init__(self, f"datastore {name!r} version {version} was deleted{when} while it was being read",
                                f"its files are gone; 'datastore list {name}' shows the live versions")


class VersionInUse(DatastoreError, PermissionError):
    """A live lease protects the version from deletion."""

    def __init__(self, name: str, version: int, holder: str) -> None:
        self.name = name
        self.version = version
        self.holder = holder
        super().__init__(f"datastore {name!r} version {version} is in use by {holder}",
                         "wait until it finishes (or stop it), then delete again")


class OrchestrationError(DatastoreError, RuntimeError):
    """Prefect could not run the flow (API unreachable, ephemeral server did not start)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"Prefect could not run the creation ({reason})",
            "start the server PREFECT_API_URL points at, or unset PREFECT_API_URL to run without one; "
            "nothing was committed",
        )


class DaskUnreachable(DatastoreError, ConnectionError):
    """The Dask cluster that should run a creation's transfers cannot be used.

    Attributes:
        address: The scheduler address (``DATASTORE_DASK_ADDRESS``), or ``a local cluster``.
        reason: What distributed said.
    """

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = " ".join(reason.split())
        if address.startswith("a local"):
            super().__init__(f"the local Dask cluster did not start ({self.reason})",
                             "unset DATASTORE_TASK_RUNNER to transfer in the flow's own process; nothing was committed")
        else:
            super().__init__(f"no Dask scheduler answers at {address} ({self.reason})",
                             f"start one ('dask scheduler', then 'dask worker {address}') or unset "
                             "DATASTORE_DASK_ADDRESS to transfer in the flow's own process; nothing was committed")


class NotOnDaskWorker(DatastoreError, FileNotFoundError):
    """A Dask worker running a creation's transfers cannot see a local path the flow could.

    Attributes:
        what: ``store`` or ``source``.
        location: The path.
        worker: The worker's address and host.
    """

    def __init__(self, what: str, location: str, worker: str) -> None:
        self.what = what
        self.location = location
        self.worker = worker
        fix = ("use an s3:// store (DATASTORE_STORE) that every worker reaches" if what == "store" else
               "give every worker the same path (a shared filesystem), or create from an s3:// or http(s):// source")
        super().__init__(f"the Dask worker {worker} cannot see the {what} {location!r}",
                         f"{fix}, or unset DATASTORE_DASK_ADDRESS to transfer in the flow's own process")


class ResumeLimit(DatastoreError, RuntimeError):
    """A flow run was lost and taken up again more often than ``DATASTORE_MAX_RESUMES`` allows.

    Attributes:
        name: The datastore.
        runs: How many times the run has started, this one included.
    """

    def __init__(self, name: str, runs: int) -> None:
        self.name = name
        self.runs = runs
        super().__init__(f"the creation of {name!r} was lost and resumed {runs - 1} times; not resuming again",
                         "look at the earlier runs' worker logs (out of memory? a machine lost?), fix that, and "
                         "run the creation again (finished batches are reused), or raise DATASTORE_MAX_RESUMES")


class NoPrefectServer(DatastoreError, RuntimeError):
    """A command that works through deployments (``--submit``, ``schedule``) has no server to talk to."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(f"{command} needs a Prefect server with a worker, and PREFECT_API_URL is not set",
                         "start one ('prefect server start'), set PREFECT_API_URL=http://HOST:4200/api and start a "
                         "worker (see the README, 'Deployments and schedules')")


class LocalServerFailed(DatastoreError, RuntimeError):
    """The local Prefect server of the out-of-the-box setup did not start.

    Attributes:
        reason: Why (its exit status, or how long it was given).
        last_line: The last line of its log.
        log: The log's path.
    """

    def __init__(self, reason: str, last_line: str, log: str = "") -> None:
        self.reason = reason
        self.last_line = last_line
        self.log = log
        detail = f": {last_line}" if last_line else ""
        super().__init__(f"the local Prefect server did not start ({reason}){detail}",
                         f"see {log or 'its log'}; or set PREFECT_API_URL to a running server, or "
                         "DATASTORE_LOCAL_SERVER=0 for Prefect's ephemeral mode; nothing was committed")


class LocalStackFailed(DatastoreError, RuntimeError):
    """A step of ``datastore server start`` (work pool, deployments, worker) did not succeed.

    Attributes:
        step: What was being done ("create the work pool 'datastore-process'", ...).
        detail: The last meaningful line of the command's output.
        log: Where the whole output is.
    """

    def __init__(self, step: str, detail: str, log: str = "") -> None:
        self.step = step
        self.detail = detail
        self.log = log
        super().__init__(f"could not {step}" + (f": {detail}" if detail else ""),
                         f"see {log or 'the output above'}; the local server keeps running "
                         "('datastore server stop' ends it), 'datastore server start' tries again")


class DeploymentMissing(DatastoreError, LookupError):
    """The deployment or work pool a command needs is not on the Prefect server."""

    def __init__(self, what: str, api_url: str, hint: str) -> None:
        self.what = what
        self.api_url = api_url
        super().__init__(f"{what} does not exist on the Prefect server at {api_url}", hint)


class InvalidSchedule(DatastoreError, ValueError):
    """A ``--cron``, ``--every`` or ``--timezone`` value that cannot be used."""

    def __init__(self, option: str, value: str, rule: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"invalid {option} {value!r}", rule)


class CreationFailed(DatastoreError, RuntimeError):
    """A creation submitted to a worker ended without committing."""

    def __init__(self, run_name: str, state: str, reason: str) -> None:
        self.run_name = run_name
        self.state = state
        self.reason = reason
        super().__init__(f"flow run {run_name!r} ended {state}, nothing was committed: {reason}")


class WaitTimedOut(DatastoreError, TimeoutError):
    """``--wait --timeout`` passed before the submitted run ended (the run itself goes on)."""

    def __init__(self, run_name: str, timeout: float, ui_url: str) -> None:
        self.run_name = run_name
        self.timeout = timeout
        self.ui_url = ui_url
        super().__init__(f"stopped waiting for flow run {run_name!r} after {timeout:g} s; it goes on on the worker",
                         f"follow it with 'datastore status' or at {ui_url}")


# --- the store --------------------------------------------------------------------------------


class StoreError(DatastoreError, OSError):
    """Something about the store (local directory or S3 bucket) went wrong."""


class StoreNotWritable(StoreError, PermissionError):
    """The store location exists (or could) but this process may not write to it."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"store {location!r} is not writable ({reason})",
            "fix its permissions or set DATASTORE_STORE to a writable path or s3://bucket/prefix",
        )


class StoreFull(StoreError):
    """A local store's filesystem has no space (or quota) left: nothing is wrong with permissions.

    A plain :class:`OSError` (through :class:`StoreError`): Python has no finer builtin for
    ENOSPC or EDQUOT, and it is not a :class:`PermissionError` like :class:`StoreNotWritable`.

    Args:
        location: The store.
        reason: ``no space left on device`` or ``disk quota exceeded``.
        where: The filesystem holding the store, as the fix names it (``/mnt/data (/dev/sdb1)``).
    """

    def __init__(self, location: str, reason: str, where: str) -> None:
        self.location = location
        self.reason = reason
        self.where = where
        # "the command", not "the create": a delete (its tombstone) or a lease can hit it too.
        super().__init__(f"store {location!r} is full ({reason})", f"free space on {where} and run the command again")


class StoreNotFound(StoreError, FileNotFoundError):
    """The bucket behind DATASTORE_STORE does not exist."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"store {location!r} does not exist ({reason})",
            "create the bucket or set DATASTORE_STORE to an existing s3://bucket/prefix",
        )


class StoreAccessDenied(StoreError, PermissionError):
    """S3 refused the credentials or the request."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"access to {location!r} was denied ({reason})",
            "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket policy",
        )


class StoreUnavailable(StoreError, ConnectionError):
    """The store could not be reached; retrying later may work."""

    transient = True

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"store {location!r} could not be reached ({reason})",
            "check AWS_ENDPOINT_URL and the network, then run the same command again",
        )


class ObjectNotFound(StoreError, FileNotFoundError):
    """A key the project expected in the store is missing."""

    def __init__(self, location: str, key: str) -> None:
        self.location = location
        self.key = key
        super().__init__(
            f"object {key!r} is missing from store {location!r}",
            "the store was changed outside datastore; run 'datastore verify' on the affected versions",
        )


class AlreadyExists(StoreError, FileExistsError):
    """A put-if-absent found the key taken (used for version allocation)."""

    def __init__(self, location: str, key: str) -> None:
        self.location = location
        self.key = key
        super().__init__(f"object {key!r} already exists in store {location!r}", "choose another key")


class DataMissing(StoreError, FileNotFoundError):
    """Data objects a version about to be committed points at are gone from the store.

    Attributes:
        missing: The missing keys, sorted.
    """

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(f"data object {missing[0]!r} this version needs is gone from the store "
                         f"({len(missing)} missing; reclaimed by gc while the creation ran?)",
                         "run the same create again: it transfers what is missing")


# --- reading ----------------------------------------------------------------------------------


class MountTargetNotEmpty(DatastoreError, FileExistsError):
    """The target directory of a mount or download exists and holds something (or is a file)."""

    def __init__(self, dest: Path, what: str = "is not empty") -> None:
        self.dest = dest
        super().__init__(f"directory {dest} {what}",
                         "choose an empty or new directory with --dir, or remove its contents")


class MountFailed(DatastoreError, OSError):
    """Writing the mounted tree failed (disk full, a path that cannot be a file here …)."""

    def __init__(self, dest: Path, path: str | None, reason: str, hint: str) -> None:
        self.dest = dest
        self.path = path
        self.reason = reason
        what = f"write {path!r} under {dest}" if path else f"mount or create {dest}"
        super().__init__(f"cannot {what} ({reason})", hint)


class FuseUnavailable(DatastoreError, OSError):
    """This machine cannot mount a FUSE filesystem (no ``/dev/fuse``, no ``fusermount3``, no libfuse)."""

    def __init__(self, reason: str, name: str = "NAME") -> None:
        self.reason = reason
        super().__init__(f"cannot mount: {reason}",
                         f"use 'datastore download {name} --dir DIR' for a verified local copy instead")


class AlreadyMounted(DatastoreError, FileExistsError):
    """The mount directory is already a mount point."""

    def __init__(self, dest: Path, what: str) -> None:
        self.dest = dest
        super().__init__(f"{dest} is already a mount ({what})",
                         f"unmount it first with 'datastore unmount {dest}', or choose another --dir")


class NotMounted(DatastoreError, ValueError):
    """``unmount`` of a directory that is no datastore mount."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        super().__init__(f"{dest} is not a datastore mount", "'datastore mounts' lists the mounts of this machine")


class MountBusy(DatastoreError, OSError):
    """``unmount`` of a mount that a process still uses."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        super().__init__(f"{dest} is busy: a process has a file or its working directory in it",
                         "close them and unmount again, or pass --lazy to detach it now and end it when they finish")


class ReadTimedOut(StoreError, TimeoutError):
    """The store did not answer a read within ``DATASTORE_READ_TIMEOUT`` seconds."""

    transient = True

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        super().__init__(f"the store did not answer within {timeout:g} s while reading {path!r}",
                         "check that the store is reachable; DATASTORE_READ_TIMEOUT sets the wait")


class InvalidDatastoreUrl(DatastoreError, ValueError):
    """A ``datastore://`` URL that cannot be parsed."""

    def __init__(self, url: str, reason: str, hint: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"invalid datastore URL {url!r}: {reason}", hint)


class DatastoreVersionNotFound(DatastoreNotFound, FileNotFoundError):
    """The name or version of a URL does not exist (a ``FileNotFoundError`` for fsspec callers)."""


class PathNotFound(DatastoreError, FileNotFoundError):
    """The version exists but has no file or folder at that path."""

    def __init__(self, url: str, name: str, version: int) -> None:
        self.url = url
        self.name = name
        self.version = version
        super().__init__(f"{url!r}: {name} version {version} has no file or folder at this path",
                         f"list it with fs.ls('datastore://{name}@{version}/') or 'datastore show {name}'")


class PathBelowFile(DatastoreError, NotADirectoryError):
    """A path below a file (``f.txt/x``): a ``NotADirectoryError``, as ``os`` and LocalFileSystem raise."""

    def __init__(self, url: str, file_url: str) -> None:
        self.url = url
        self.file_url = file_url
        super().__init__(f"{url!r}: {file_url} is a file, not a folder",
                         f"nothing is below a file; read {file_url} itself")


class InvalidRead(DatastoreError, ValueError):
    """Read arguments the file cannot satisfy (a ``size`` that is not the file's, ``start`` after ``end``)."""

    def __init__(self, url: str, reason: str, hint: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot read {url!r}: {reason}", hint)


class ReadOnlyFileSystem(DatastoreError, PermissionError):
    """A write to a ``datastore://`` path: versions are immutable."""

    def __init__(self, what: str, url: str) -> None:
        self.what = what
        self.url = url
        super().__init__(f"cannot {what} {url!r}: datastore versions are immutable (read-only)",
                         "write to a local folder or bucket and create a new version from it with 'datastore create'")


class ChecksumMismatch(DatastoreError, ValueError):
    """Stored bytes do not match the manifest (the whole file, or one block of it)."""

    def __init__(self, path: str, expected: str, actual: str, block: int | None = None) -> None:
        self.path = path
        self.block = block
        what = f"file {path!r}" if block is None else f"block {block} of file {path!r}"
        super().__init__(f"{what} does not match its manifest (sha256 {actual[:12]}… != {expected[:12]}…)",
                         "the store was damaged or changed outside datastore; run 'datastore verify'")


class BlocksNotRecorded(DatastoreError, ValueError):
    """A block of a file was asked for, but the manifest has no hash that checks that block alone."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"file {path!r} has no block hashes in its manifest ({why})",
                         "read it whole (Reader.read or Reader.stream, checked against its sha256 or ETag)")


class InvalidRange(DatastoreError, ValueError):
    """A negative offset or length asked of :meth:`Reader.read_range`."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        self.path = path
        super().__init__(f"cannot read {length} bytes at offset {offset} of file {path!r}",
                         "offset and length must be 0 or more")


class VerificationFailed(DatastoreError, ValueError):
    """``verify`` found files of a version missing, truncated or changed (the report lists them)."""

    def __init__(self, name: str, version: int, failed: int, files: int) -> None:
        self.name, self.version, self.failed, self.files = name, version, failed, files
        super().__init__(f"{failed} of {files} files of {name} version {version} failed verification",
                         "restore the objects listed above, or create a new version from the current source")


class ManifestDamaged(DatastoreError, ValueError):
    """A version's manifest breaks a rule every manifest keeps (order, a line that is no item)."""

    def __init__(self, name: str, version: int, reason: str) -> None:
        self.name, self.version, self.reason = name, version, reason
        super().__init__(f"the manifest of {name} version {version} is damaged ({reason})",
                         f"run 'datastore verify {name} --version {version}', or create a new version")


def is_transient(exc: BaseException) -> bool:
    """Whether a failed task should be retried (Prefect ``retry_condition_fn`` uses this)."""
    if isinstance(exc, DatastoreError):
        return exc.transient
    # Anything we did not classify (an unexpected OSError from a flaky disk, say) gets a retry:
    # retries are idempotent by construction, so a wasted retry costs only time.
    return not isinstance(exc, (ValueError, TypeError, KeyError, AssertionError))
