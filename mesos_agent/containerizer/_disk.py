"""disk/du: the space a sandbox takes, measured like ``du -s`` (allocated blocks, hard links once)."""

from __future__ import annotations

import os


def disk_usage(path: str) -> int | None:
    """Bytes allocated to path and everything under it (symlinks not followed); None when path is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    total = st.st_blocks * 512
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


def disk_usage_many(paths: list[str]) -> list[int | None]:
    return [disk_usage(p) for p in paths]
