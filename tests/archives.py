"""Archives built in memory, for the tests that serve them over HTTP."""

from __future__ import annotations

import io
import tarfile
import zipfile


def build(fmt: str, tree: dict[str, bytes]) -> bytes:
    """An archive of ``tree`` in ``fmt`` (zip, tar, tar.gz), built in memory."""
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in tree.items():
                z.writestr(name, data)
    else:
        with tarfile.open(fileobj=buf, mode={"tar": "w", "tar.gz": "w:gz"}[fmt]) as t:
            for name, data in tree.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_gz(tree: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` of ``tree``."""
    return build("tar.gz", tree)


def symlink_escape() -> bytes:
    """A ``.tar.gz`` whose only member is a symlink pointing out of the archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        t.addfile(info)
    return buf.getvalue()
