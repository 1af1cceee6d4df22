"""The rule for a manifest path that may become a path on disk or in a mounted tree.

A manifest path is relative and ``/``-separated. Whatever materializes it (``download`` writing
files, the mount's index answering the kernel) must refuse one that could escape the tree or
name the same node twice: an absolute path, an empty, ``.`` or ``..`` component, or a NUL
(which no file system accepts in a name). One rule, here, so both readers agree on what is safe.
"""

from __future__ import annotations


def is_safe(path: str) -> bool:
    """Whether the manifest path ``path`` may become a path in a tree.

    Substring tests on ``/path/`` instead of splitting: the mount's index asks this of every
    file of a version, and this is several times faster than looking at each component.

    Args:
        path: A manifest path such as ``"a/b.txt"``.

    Returns:
        False for ``""``, ``"/a"``, ``"a//b"``, ``"a/./b"``, ``"a/../b"``, ``"a/"``, ``"."``,
        ``".."`` or a path containing NUL; True otherwise (``"..."`` and ``".a"`` are fine names).
    """
    if not path or "\x00" in path:
        return False
    wrapped = f"/{path}/"  # every component now sits between two slashes
    return "//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped


def safe_parts(path: str) -> list[str] | None:
    """The components of a manifest path, or None when it could escape or collide with the tree.

    Args:
        path: A manifest path such as ``"a/b.txt"``.

    Returns:
        ``["a", "b.txt"]``; None when :func:`is_safe` refuses the path.
    """
    return path.split("/") if is_safe(path) else None
